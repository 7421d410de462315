"""mkdocs hook: the site shows the repository files the docs link to.

The pages in docs/ are written to read on GitHub: they link to `../README.md` and to the analysis
read-outs (`../analysis/results/zoo.md`, figures, logs), which live outside docs/. This hook adds
every repository file reachable by relative links from docs/ (following links inside added Markdown
files too) to the site under `repo/`, keeping its path, and rewrites those links when a page is
rendered. The sources stay untouched, so the same links keep working on GitHub.

It also makes heading anchors GitHub's (`--compile` gives `---compile`, not `-compile`), so an
anchor written for GitHub resolves on the site as well.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

MOUNT = "repo"  # site folder that holds the files from outside docs/
# an inline Markdown link or image target: ](path) or ](path#anchor) or ](path "title")
_LINK = re.compile(r"(\]\()([^)\s#]+)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_ADDED: set[str] = set()  # the files added from outside docs/, which `mkdocs serve` watches too


def _github_slug(value: str, separator: str) -> str:
    """GitHub's heading anchors: lower case, punctuation dropped, each space a separator."""
    return re.sub(r"[^\w\- ]", "", value.strip().lower()).replace(" ", separator)


def _repo_root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def _docs_prefix(config) -> str:
    return Path(config.docs_dir).resolve().relative_to(_repo_root(config)).as_posix()


def _targets(text: str, page_dir: str):
    """Repository paths (relative, POSIX) of the relative link targets in one Markdown text."""
    for match in _LINK.finditer(text):
        url = match.group(2)
        if _SCHEME.match(url) or url.startswith("/"):
            continue
        yield posixpath.normpath(posixpath.join(page_dir, url))


def _repo_path(src_uri: str, docs: str) -> str:
    """Where a site file lives in the repository."""
    if src_uri.startswith(MOUNT + "/"):
        return src_uri[len(MOUNT) + 1 :]
    return f"{docs}/{src_uri}"


def _site_path(repo_path: str, docs: str) -> str:
    """Where a repository file lives in the site."""
    if repo_path.startswith(docs + "/"):
        return repo_path[len(docs) + 1 :]
    return f"{MOUNT}/{repo_path}"


def on_config(config):
    config.mdx_configs.setdefault("toc", {})["slugify"] = _github_slug
    return config


def on_files(files, config):
    root, docs = _repo_root(config), _docs_prefix(config)
    queue = [(f"{docs}/{f.src_uri}", Path(f.abs_src_path)) for f in files.documentation_pages()]
    seen = set()
    while queue:
        repo_path, path = queue.pop()
        text = path.read_text(encoding="utf-8")
        for target in _targets(text, posixpath.dirname(repo_path)):
            if target.startswith(("..", docs + "/")) or target in seen:
                continue
            source = root / target
            if not source.is_file():
                continue  # left for mkdocs to report
            seen.add(target)
            files.append(File.generated(config, f"{MOUNT}/{target}", abs_src_path=str(source)))
            _ADDED.add(str(source))
            if target.endswith(".md"):
                queue.append((target, source))
    return files


def on_serve(server, config, builder):
    for path in sorted(_ADDED):
        server.watch(path)
    return server


def on_page_markdown(markdown, page, config, files):
    docs = _docs_prefix(config)
    page_dir = posixpath.dirname(_repo_path(page.file.src_uri, docs))
    site_dir = posixpath.dirname(page.file.src_uri)

    def rewrite(match):
        url = match.group(2)
        if _SCHEME.match(url) or url.startswith("/"):
            return match.group(0)
        site = _site_path(posixpath.normpath(posixpath.join(page_dir, url)), docs)
        if files.get_file_from_path(site) is None:
            return match.group(0)
        return match.group(1) + posixpath.relpath(site, site_dir or ".")

    return _LINK.sub(rewrite, markdown)
