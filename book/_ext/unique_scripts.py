"""Sphinx extension: drop repeated inline scripts from each page.

Sphinx 7.4 adds an inline script registered after the builder starts (``add_js_file(None,
body=...)``, as sphinx-thebe does) twice: once as it is registered, once more when writing
starts (its file name then reads '' instead of None, so the duplicate check misses it). The
second ``const THEBE_JS_URL`` is a console error on every page.
"""

from __future__ import annotations


def _unique(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        key = (getattr(js, "filename", js) or "",
               tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    scripts[:] = kept


def setup(app):
    app.connect("html-page-context", _unique)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
