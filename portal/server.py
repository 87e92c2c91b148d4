"""What a server process does once, after Django is set up and before it serves requests."""

import gc

from django.urls import get_resolver


def warm_and_freeze() -> None:
    """Import everything the URLconf reaches, then take those objects out of the cyclic garbage
    collector's view.

    Modules, classes, URL patterns and settings live as long as the process. Left tracked, a
    worker's full collection walks them all, in the middle of whatever request triggers it:
    that pause is most of the catalog API's tail latency under load. Freezing after the imports
    also keeps those pages shared between forked workers.
    """
    get_resolver().url_patterns  # noqa: B018 (imports every view now, not in a first request)
    gc.freeze()
