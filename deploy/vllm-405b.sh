#!/usr/bin/env bash
# The big tier: Llama 3.1 405B Instruct (FP8) on one 8x H100 80GB node with vLLM's
# OpenAI-compatible server. The gateway reaches it through [gateway.big]
# (kind = "openai", base_url = "http://<node>:8000/v1", model = $MODEL).
#
# FP8 weights are ~410 GB: tensor parallel over 8 GPUs leaves ~25 GB per GPU for
# the KV cache. Voice turns are short, so a modest context and many sequences
# suit the load; prefix caching makes the shared system prompt free after the first turn.
set -euo pipefail
MODEL=${MODEL:-meta-llama/Llama-3.1-405B-Instruct-FP8}
PORT=${PORT:-8000}
: "${VLLM_API_KEY:?set VLLM_API_KEY; the gateway sends it from the env var named in [gateway.big] api_key_env}"
exec vllm serve "$MODEL" \
  --host 0.0.0.0 --port "$PORT" \
  --api-key "$VLLM_API_KEY" \
  --tensor-parallel-size 8 \
  --max-model-len 16384 \
  --max-num-seqs 128 \
  --gpu-memory-utilization 0.92 \
  --enable-prefix-caching \
  --enable-auto-tool-choice --tool-call-parser llama3_json \
  --served-model-name llama-3.1-405b-instruct
