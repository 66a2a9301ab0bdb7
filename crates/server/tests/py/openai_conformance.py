"""Conformance of rightsize's OpenAI-compatible API, checked with the official `openai` client.

Usage: python3 openai_conformance.py BASE_URL CHAT_MODEL EMBED_MODEL
Exits non-zero on the first failed check; prints one line per check.
"""
import base64
import json
import struct
import sys

import openai
from openai import OpenAI

base, chat_model, embed_model = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=base + "/v1", api_key="unused-open-local", max_retries=0, timeout=120)
passed = 0


def check(name, cond, detail=""):
    global passed
    if not cond:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    passed += 1
    print(f"ok   {name}")


# models
models = client.models.list()
ids = [m.id for m in models.data]
check("models.list", chat_model in ids and embed_model in ids, ids)
check("models.retrieve", client.models.retrieve(chat_model).id == chat_model)
try:
    client.models.retrieve("no-such-model")
    check("models.retrieve unknown -> 404", False)
except openai.NotFoundError as e:
    check("models.retrieve unknown -> 404", e.status_code == 404)

# chat, non-streaming
r = client.chat.completions.create(
    model=chat_model,
    messages=[{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is the capital of France?"}],
    temperature=0, max_tokens=24, seed=1,
)
check("chat.create text", "Paris" in r.choices[0].message.content, r.choices[0].message.content)
check("chat.create usage", r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 24 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage)
check("chat.create finish_reason", r.choices[0].finish_reason in ("stop", "length"))
check("chat.create object", r.object == "chat.completion" and r.id.startswith("chatcmpl-"))

# max_completion_tokens and length
r = client.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "Write a long story."}], temperature=0, max_completion_tokens=5)
check("max_completion_tokens -> length", r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5, r.usage)

# stop
r = client.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "Count from 1 to 10 separated by commas."}], temperature=0, max_tokens=60, stop=["5"])
check("stop", "5" not in r.choices[0].message.content and r.choices[0].finish_reason == "stop", r.choices[0].message.content)

# streaming with usage
chunks = list(client.chat.completions.create(
    model=chat_model, messages=[{"role": "user", "content": "What is the capital of France?"}],
    temperature=0, max_tokens=24, stream=True, stream_options={"include_usage": True},
))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check("stream text", "Paris" in text, text)
check("stream first delta has role", chunks[0].choices[0].delta.role == "assistant")
finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
check("stream finish_reason", finishes in (["stop"], ["length"]), finishes)
check("stream usage chunk", chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0 and chunks[-1].choices == [])
check("stream equals non-stream (greedy)", text == client.chat.completions.create(
    model=chat_model, messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0, max_tokens=24
).choices[0].message.content)

# seed reproducibility
def sampled(seed):
    return client.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "Tell me about cats."}], temperature=1.0, seed=seed, max_tokens=20).choices[0].message.content
check("seed reproducible", sampled(7) == sampled(7))

# logprobs
r = client.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "Say hello."}], temperature=0, max_tokens=6, logprobs=True, top_logprobs=3)
lp = r.choices[0].logprobs.content
check("logprobs per token", len(lp) >= 1 and all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in lp), lp)
check("logprobs greedy = top", all(abs(t.top_logprobs[0].logprob - t.logprob) < 1e-4 for t in lp))

# json_schema enforced
schema = {"type": "object", "properties": {"email": {"type": "string"}, "phone": {"type": "string"}}, "required": ["email", "phone"], "additionalProperties": False}
r = client.chat.completions.create(
    model=chat_model, temperature=0, max_tokens=100,
    messages=[{"role": "user", "content": "Extract the contact: jane@example.com, +44 20 7946 0958"}],
    response_format={"type": "json_schema", "json_schema": {"name": "contact", "schema": schema, "strict": True}},
)
obj = json.loads(r.choices[0].message.content)
check("json_schema valid", set(obj) == {"email", "phone"} and all(isinstance(v, str) for v in obj.values()), obj)
r = client.chat.completions.create(model=chat_model, temperature=0, max_tokens=60, messages=[{"role": "user", "content": "Describe a cat as JSON."}], response_format={"type": "json_object"})
check("json_object starts an object", r.choices[0].message.content.lstrip().startswith("{"), r.choices[0].message.content)

# legacy completions
r = client.completions.create(model=chat_model, prompt="The capital of France is", max_tokens=5, temperature=0)
check("completions", r.object == "text_completion" and len(r.choices[0].text) > 0 and r.usage.completion_tokens <= 5)

# embeddings
e = client.embeddings.create(model=embed_model, input=["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell today."])
v = [d.embedding for d in e.data]
dot = lambda a, b: sum(x * y for x, y in zip(a, b))
check("embeddings shape", len(v) == 3 and len(v[0]) == 384 and e.usage.prompt_tokens > 0)
check("embeddings semantics", dot(v[0], v[1]) > dot(v[0], v[2]) + 0.3, (dot(v[0], v[1]), dot(v[0], v[2])))
e1 = client.embeddings.create(model=embed_model, input="hello world")
check("embeddings single string", len(e1.data) == 1)
raw = client.embeddings.with_raw_response.create(model=embed_model, input="hello world", encoding_format="base64")
b64 = raw.http_response.json()["data"][0]["embedding"]
floats = struct.unpack("<384f", base64.b64decode(b64))
check("embeddings base64", max(abs(a - b) for a, b in zip(floats, e1.data[0].embedding)) < 1e-6)

# errors, typed by the client
def expect(exc, status, fn, name):
    try:
        fn()
        check(name, False, "no error")
    except exc as err:
        body = err.body if isinstance(err.body, dict) else {}
        check(name, err.status_code == status and "message" in (body.get("error") or body), (err.status_code, err.body))

expect(openai.NotFoundError, 404, lambda: client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}]), "unknown model -> 404")
expect(openai.BadRequestError, 400, lambda: client.chat.completions.create(model=chat_model, messages=[]), "empty messages -> 400")
expect(openai.BadRequestError, 400, lambda: client.chat.completions.create(model=chat_model, messages=[{"role": "wizard", "content": "x"}]), "unknown role -> 400")
expect(openai.BadRequestError, 400, lambda: client.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "x"}], max_tokens=10**9), "huge max_tokens -> 400")
expect(openai.BadRequestError, 400, lambda: client.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "x"}], temperature=7), "bad temperature -> 400")
expect(openai.BadRequestError, 400, lambda: client.chat.completions.create(
    model=chat_model, messages=[{"role": "user", "content": "x"}],
    response_format={"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "object", "properties": {"a": {"$ref": "#/nope"}}}}}), "uncompilable schema -> 400")
expect(openai.BadRequestError, 400, lambda: client.embeddings.create(model=chat_model, input="x"), "embeddings on a chat model -> 400")

print(f"{passed} passed, 0 failed")
