"""JSON parsing that turns hostile bodies into 400s instead of crashes."""

from __future__ import annotations

import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, plus refusals for what it lets through.

    - absurdly nested documents (Python's decoder raises RecursionError);
    - lone UTF-16 surrogates (``"\\ud800"``): valid JSON escapes, but not text
      that can ever be written back out as UTF-8 or stored in PostgreSQL.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ParseError("JSON parse error - text contains unpaired surrogates") from None
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        return data
