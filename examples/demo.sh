#!/usr/bin/env bash
# The OpenSearch path end to end on this machine: a local node, the rerank connector, a small corpus,
# `setup opensearch`, and an ordinary search that comes back reranked.
#
# Without a GPU the connector scores with the CPU fallback (a lexical scorer, NOT Retro*). To rerank with
# Retro*, start SGLang on a GPU host (see README.md) and run:
#   RETROSEARCH_BACKEND=sglang RETROSEARCH_BACKEND_URL=http://gpu-host:30000 make demo
set -euo pipefail
cd "$(dirname "$0")/.."

retrosearch=.venv/bin/retrosearch
node_port=${DEMO_OPENSEARCH_PORT:-9200}
connector_port=${DEMO_CONNECTOR_PORT:-8000}
engine_url="http://127.0.0.1:${node_port}"
connector_url="http://127.0.0.1:${connector_port}"
export RETROSEARCH_BACKEND=${RETROSEARCH_BACKEND:-cpu}

echo "== 1/5 local OpenSearch node (provisioned from Maven Central on the first run)"
"$retrosearch" node start --port "$node_port"

echo "== 2/5 rerank connector (backend: ${RETROSEARCH_BACKEND}) on ${connector_url}"
connector_log=$(mktemp -t retrosearch-demo-connector.XXXXXX.log)
"$retrosearch" serve --port "$connector_port" >"$connector_log" 2>&1 &
connector_pid=$!
trap 'kill "$connector_pid" 2>/dev/null || true' EXIT
connector_up() { curl -fsS "${connector_url}/health" >/dev/null 2>&1; }
for _ in $(seq 1 100); do
  connector_up && break
  kill -0 "$connector_pid" 2>/dev/null || { cat "$connector_log"; exit 1; }
  sleep 0.2
done
connector_up || { echo "the connector did not answer on ${connector_url} within 20 s"; cat "$connector_log"; exit 1; }

echo "== 3/5 index examples/demo-corpus.jsonl into 'demo'"
"$retrosearch" index examples/demo-corpus.jsonl --index demo --url "$engine_url" --recreate

echo "== 4/5 wire the connector into OpenSearch (connector, model, search pipeline 'retrostar')"
"$retrosearch" setup opensearch --url "$engine_url" --connector-url "$connector_url" --index demo --fields title,text

echo "== 5/5 the same query without and with the rerank pipeline"
"$retrosearch" search "why do leaves change colour in autumn" --index demo --url "$engine_url" \
  --connector-url "$connector_url" --candidates 10 --top 5

cat <<TXT

Any client can now search through the pipeline while a connector runs on ${connector_url}:
  curl -s '${engine_url}/demo/_search?search_pipeline=retrostar' -H 'Content-Type: application/json' -d '{
    "query": {"multi_match": {"query": "why do leaves change colour", "fields": ["title", "text"]}},
    "ext": {"rerank": {"query_context": {"query_text": "why do leaves change colour"}}}}'
The connector stops with this script; the node keeps running: ${retrosearch} node stop --port ${node_port}
TXT
