"""The explorer page: type a query, see the first-stage hits and the Retro* reranking side by side with
scores, rank changes and reasoning, and the recent rerank events from the log. See docs/explorer.md.

`routes.install_explorer(app)` adds the page, its static files (`connector/static/`) and its JSON API; the
app's lifespan puts an `engines.ExplorerEngines` on `app.state.explorer`. `settings.ExplorerSettings` is
a mixin of the connector's settings, so this package imports nothing at the top: `connector.settings`
imports it.
"""
