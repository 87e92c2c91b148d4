from rest_framework.renderers import BaseRenderer

from catalog.rendering import dump_yaml


class YAMLRenderer(BaseRenderer):
    """``application/yaml``: one document, or a YAML stream for a list of entities."""

    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        if data == []:
            # An empty stream is an empty string, and DRF drops the Content-Type of an empty
            # body; a comment keeps both the type and "no documents".
            return b"# no entities\n"
        return dump_yaml(data).encode()
