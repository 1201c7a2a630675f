"""MkDocs hook: links from the docs pages to repository files outside ``docs/`` (experiment configs, scripts)
work on the repository's web view but have no page on the site; there they become the file's path as code."""

from __future__ import annotations

import posixpath
import re

_RELATIVE_LINK = re.compile(r"\[([^\]]+)\]\((\.\./[^)\s]+)\)")


def on_page_markdown(markdown: str, page, config, files) -> str:  # the MkDocs hook signature
    folder = posixpath.dirname(page.file.src_uri)

    def outside_docs_as_path(match: re.Match) -> str:
        text, target = match.groups()
        resolved = posixpath.normpath(posixpath.join(folder, target))
        if not resolved.startswith("../"):
            return match.group(0)
        path = resolved.removeprefix("../")
        return text if text.strip("`").rstrip("/") == path.rstrip("/") else f"{text} (`{path}` in the repository)"

    return _RELATIVE_LINK.sub(outside_docs_as_path, markdown)
