"""Optional web search through a SearxNG instance's JSON API (off unless tools.searxng_url is set).

SearxNG answers GET /search?q=...&format=json with {"results": [{"title", "url", "content"}, ...]};
the instance must allow the json format (search.formats in its settings.yml).
"""
from __future__ import annotations

import httpx

from gateway.tools.base import ToolError, ToolResult

MAX_RESULTS = 3
MAX_SNIPPET_CHARS = 300


async def web_search(http: httpx.AsyncClient, searxng_url: str, query: str) -> ToolResult:
    if not searxng_url:
        raise ToolError("web search is off: tools.searxng_url is empty", "Web search isn't set up.",
                        code="FAILED_PRECONDITION", retryable=False)
    try:
        resp = await http.get(searxng_url, params={"q": query, "format": "json"})
    except httpx.HTTPError as exc:
        raise ToolError(f"SearxNG at {searxng_url} failed: {type(exc).__name__}", "Search isn't answering right now.") from exc
    if resp.status_code != 200:
        raise ToolError(f"SearxNG at {searxng_url} answered HTTP {resp.status_code}; is format=json enabled?",
                        "Search isn't working right now.")
    try:
        results = resp.json().get("results") or []
    except (ValueError, AttributeError) as exc:
        raise ToolError(f"SearxNG at {searxng_url} sent invalid JSON", "Search sent something I can't read.") from exc
    hits = [{"title": str(r.get("title", ""))[:120], "url": str(r.get("url", "")),
             "snippet": str(r.get("content", ""))[:MAX_SNIPPET_CHARS]} for r in results[:MAX_RESULTS]]
    if not hits:
        return ToolResult("web_search", {"query": query, "results": []}, f"I found nothing about {query}.")
    return ToolResult("web_search", {"query": query, "results": hits}, f"Top result: {hits[0]['title']}. {hits[0]['snippet']}")
