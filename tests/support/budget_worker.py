"""A worker process for the shared-budget tests:
``python -m tests.support.budget_worker API_URL TOKEN PER_HOUR GO_FILE READY_FILE`` writes
READY_FILE once set up, waits for GO_FILE, then reads the workspace with one Bitbucket Cloud
client until its request budget is spent, and prints how many requests it made. The budget
store and prefix come from the environment, as a real worker's would."""

import json
import os
import sys
import time


def main() -> None:
    api_url, token, per_hour, go_file, ready_file = sys.argv[1:6]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from integrations.providers.base import RequestStats
    from integrations.providers.bitbucket_cloud.client import BitbucketCloudClient
    from integrations.providers.http import ProviderRateLimited, RetryPolicy
    from integrations.providers.oauth import BearerCredential

    client = BitbucketCloudClient(
        base_url=api_url,
        credentials=[BearerCredential(token)],
        stats=RequestStats(),
        hourly_limit=int(per_hour),
        retry=RetryPolicy(max_tries=1),
    )
    with open(ready_file, "w") as ready:
        ready.write("ready")
    deadline = time.monotonic() + 60
    while not os.path.exists(go_file) and time.monotonic() < deadline:
        time.sleep(0.01)
    made = 0
    try:
        for _ in range(10 * int(per_hour)):
            client.workspace("acme")
            made += 1
    except ProviderRateLimited:
        pass
    print(json.dumps({"made": made}))


if __name__ == "__main__":
    main()
