#!/usr/bin/env python3
"""What the API costs to run on AWS: dollars per million requests of each route family, and the
monthly bill at 10,000 and 1,000,000 active users under a stated request mix.

Inputs:
- bench/measured.json: the measured figures (init time of each Lambda binary from
  tests/benches/cold_start.py, handler time of each route family from the load benchmark),
  with the commands and the date they were measured;
- infra/template.yaml: each function's configured memory (MemorySize);
- PRICES below: AWS's published prices (us-east-1), with the date they were read.

    python3 bench/cost.py                 # prints the README's "Cost" section
    python3 bench/cost.py --check README.md   # fails when the README's section differs

The model, per request of a family: API Gateway's request (HTTP API) or message (WebSocket API),
one Lambda request, the billed duration (the handler time, rounded up to the millisecond, times
the memory), the init duration on the share of requests that start a new instance
(COLD_SHARE; AWS bills the INIT phase), and the DynamoDB request units the request makes in the
short-lived table (the rate-limit window: one strongly consistent read and one conditional
write; an idempotency record: two writes). Not included: data transfer, CloudWatch logs, RDS,
S3 storage and requests, Qdrant, and the LLM provider's tokens (the chat's own bill).
"""

import json
import math
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# AWS's published on-demand prices, us-east-1, as read on 2026-12-06.
PRICES = {
    "date": "2026-12-06",
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_s": {"x86_64": 0.0000166667, "arm64": 0.0000133334},
    "http_api_request": 1.00 / 1e6,  # first 300 million a month
    "ws_message": 1.00 / 1e6,  # first billion a month
    "ws_connection_minute": 0.25 / 1e6,
    "dynamodb_rru": 0.125 / 1e6,  # on-demand, since November 2024
    "dynamodb_wru": 0.625 / 1e6,
}

# The share of requests that start a new Lambda instance (and pay its init).
COLD_SHARE = 0.01

# Each route family: its function, its API, and the short-lived table's request units per
# request (rate limit: 1 read + 1 write; idempotency on creates: 2 more writes).
FAMILIES = [
    # family, function, api, rru, wru, extra seconds of the handler not measured here
    ("auth: refresh", "auth", "http", 2, 1, 0.0),
    ("storage: list, sync, download", "storage", "http", 1, 1, 0.0),
    ("storage: create, update, delete", "storage", "http", 1, 3, 0.0),
    ("chat (HTTP)", "chat", "http", 1, 3, None),
]

# The chat's handler waits on the model: its duration is the provider's time to answer, an
# assumption (the scripted model answers at once), not a measurement.
CHAT_PROVIDER_SECONDS = 4.0

# Requests of one active user in a month, by family: a desktop app syncing every few minutes
# while open (about 20 working days of 8 hours), a few writes, some chats.
MIX = {
    "auth: refresh": 320,
    "storage: list, sync, download": 2400,
    "storage: create, update, delete": 300,
    "chat (HTTP)": 60,
}
USERS = [10_000, 1_000_000]

BEGIN = "<!-- cost:begin (python3 bench/cost.py) -->"
END = "<!-- cost:end -->"


def memory_by_function():
    """MemorySize of each AWS::Serverless::Function, by its binary (BuildProperties.Binary)."""
    text = open(os.path.join(ROOT, "infra", "template.yaml")).read()
    memory = {}
    for block in re.split(r"\n  (?=[A-Za-z]+:\n)", text):
        if "Type: AWS::Serverless::Function" not in block:
            continue
        binary = re.search(r"Binary:\s*(\S+)", block)
        size = re.search(r"MemorySize:\s*(\d+)", block)
        if binary and size:
            memory[binary.group(1)] = int(size.group(1))
    return memory


def per_million(measured, memory, architecture):
    """Dollars per million requests of each family."""
    rows = []
    for family, function, api, rru, wru, extra in FAMILIES:
        handler_ms = measured["handler_ms"][family]
        seconds = math.ceil(handler_ms) / 1000 + (
            CHAT_PROVIDER_SECONDS if extra is None else extra
        )
        gb = memory[function] / 1024
        init_s = measured["init_ms"][function] / 1000
        gb_s = gb * (seconds + COLD_SHARE * init_s)
        lambda_cost = PRICES["lambda_request"] + gb_s * PRICES["lambda_gb_s"][architecture]
        gateway = (
            PRICES["http_api_request"]
            if api == "http"
            else PRICES["ws_message"]
            + WS_MINUTES_PER_MESSAGE * PRICES["ws_connection_minute"]
        )
        dynamo = rru * PRICES["dynamodb_rru"] + wru * PRICES["dynamodb_wru"]
        total = lambda_cost + gateway + dynamo
        rows.append((family, function, memory[function], handler_ms, total * 1e6))
    return rows


def render(measured):
    memory = memory_by_function()
    x86 = per_million(measured, memory, "x86_64")
    arm = per_million(measured, memory, "arm64")
    lines = [
        BEGIN,
        "",
        f"Dollars per million requests of each route family, from `bench/cost.py`: AWS's "
        f"us-east-1 prices as read on {PRICES['date']}, each function's memory from "
        f"`infra/template.yaml`, and the figures measured on {measured['date']} "
        f"({measured['how']}). A request pays API Gateway, one Lambda request, its billed "
        f"duration (handler time rounded up to the millisecond, times the memory), the init "
        f"time on {COLD_SHARE:.0%} of requests (a new instance), and its DynamoDB request "
        f"units (rate limit, idempotency). Not included: data transfer, logs, RDS, S3, Qdrant "
        f"and the model's tokens; volume tiers are not applied (API Gateway's HTTP API costs "
        f"$0.90 instead of $1.00 per million past 300 million a month), so the larger bill is "
        f"an upper bound. The chat's duration is the model's answer time, assumed "
        f"{CHAT_PROVIDER_SECONDS:.0f} s (the scripted model answers at once); arm64 assumes "
        f"the same durations as the x86_64 measurements.",
        "",
        "| route family | function | memory (MB) | handler (ms) | $ / 1M, x86_64 | $ / 1M, arm64 |",
        "|---|---|---|---|---|---|",
    ]
    for (family, function, mb, handler, dollars), (*_, arm_dollars) in zip(x86, arm):
        lines.append(
            f"| {family} | `{function}` | {mb} | {handler:.1f} | {dollars:.2f} | {arm_dollars:.2f} |"
        )
    requests = sum(MIX.values())
    lines += [
        "",
        f"A month, with each active user making {requests:,} requests "
        f"({', '.join(f'{n:,} {family}' for family, n in MIX.items())}):",
        "",
        "| active users | requests | x86_64 | arm64 |",
        "|---|---|---|---|",
    ]
    for users in USERS:
        totals = []
        for rows in (x86, arm):
            totals.append(
                sum(users * MIX[family] * dollars / 1e6 for family, _, _, _, dollars in rows)
            )
        lines.append(
            f"| {users:,} | {users * requests:,} | ${totals[0]:,.0f} | ${totals[1]:,.0f} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def main():
    measured = json.load(open(os.path.join(ROOT, "bench", "measured.json")))
    section = render(measured)
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        readme = open(sys.argv[2]).read()
        start, end = readme.find(BEGIN), readme.find(END)
        if start < 0 or end < 0:
            sys.exit(f"{sys.argv[2]} has no cost section ({BEGIN} ... {END})")
        if readme[start : end + len(END)] != section:
            sys.exit(
                f"{sys.argv[2]}'s cost section is not what bench/cost.py computes: "
                "run python3 bench/cost.py and paste its output"
            )
        print("the README's cost section is up to date")
        return
    print(section)


if __name__ == "__main__":
    main()
