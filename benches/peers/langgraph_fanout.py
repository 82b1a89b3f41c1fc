#!/usr/bin/env python3
"""The peer workload of issue 14 in LangGraph, in memory, for the runtime bench.

One graph: 8 no-op nodes fanned out from START, joined by an `evaluate` node
that waits for all 8 (a barrier: `add_edge([...8 nodes], "evaluate")`); each
node appends its recommendation to a list (`operator.add` reducer), and
`evaluate` judges the 8 (counts the approved ones, the quality is their
share). Nodes are `async def`, run with `ainvoke` on one asyncio loop.

Measured closed loop like the Rust rows: `--in-flight N` coroutines under
`asyncio.gather`, each starting its next `ainvoke` when the last returned,
until `--runs` were started or `--seconds` passed. Progress on stderr; one
JSON line on stdout: langgraph and Python versions, runs, seconds, p50 and
p99 latency in seconds, and the CPU seconds the process used meanwhile.

Run alone: `python3 benches/peers/langgraph_fanout.py --in-flight 64`.
Needs `pip install langgraph`.
"""

import argparse
import asyncio
import json
import operator
import platform
import sys
import time
from importlib.metadata import version
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph

AGENTS = 8


class State(TypedDict):
    input: dict
    recommendations: Annotated[list, operator.add]
    evaluation: dict


def agent(i):
    async def run(state):
        # The no-op agent: answers at once, like the Rust rows' agents.
        return {
            "recommendations": [
                {"agent_id": f"noop_{i}", "content": {"decision": "sound"}, "confidence": 1.0}
            ]
        }

    return run


async def evaluate(state):
    recs = state["recommendations"]
    approved = sum(1 for r in recs if r["content"]["decision"] == "sound")
    return {
        "evaluation": {
            "evaluated": len(recs),
            "approved": approved,
            "quality": 100.0 * approved / len(recs),
        }
    }


def graph():
    g = StateGraph(State)
    names = [f"noop_{i}" for i in range(AGENTS)]
    for i, name in enumerate(names):
        g.add_node(name, agent(i))
        g.add_edge(START, name)
    g.add_node("evaluate", evaluate)
    g.add_edge(names, "evaluate")
    g.add_edge("evaluate", END)
    return g.compile()


def pct(sorted_values, p):
    if not sorted_values:
        return float("nan")
    i = round((len(sorted_values) - 1) * p)
    return sorted_values[min(i, len(sorted_values) - 1)]


async def closed_loop(app, in_flight, runs, seconds):
    started = 0
    latencies = []
    deadline = time.perf_counter() + seconds

    async def client(c):
        nonlocal started
        while started < runs and time.perf_counter() < deadline:
            started += 1
            t = time.perf_counter()
            out = await app.ainvoke({"input": {"client": c}, "recommendations": []})
            latencies.append(time.perf_counter() - t)
            ev = out["evaluation"]
            assert ev["evaluated"] == AGENTS, out

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(in_flight)))
    return latencies, time.perf_counter() - start


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--in-flight", type=int, default=1)
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=2.0)
    a = p.parse_args()
    app = graph()
    # Warm-up: the graph's first runs build caches.
    await closed_loop(app, min(a.in_flight, 8), 64, 10.0)
    print(f"  langgraph, {a.in_flight} in flight: measuring", file=sys.stderr)
    cpu = time.process_time()
    latencies, secs = await closed_loop(app, a.in_flight, a.runs, a.seconds)
    cpu = time.process_time() - cpu
    latencies.sort()
    print(
        json.dumps(
            {
                "langgraph": version("langgraph"),
                "python": platform.python_version(),
                "concurrency": "async def nodes, ainvoke on one asyncio loop; N in flight = N client coroutines under asyncio.gather, closed loop",
                "in_flight": a.in_flight,
                "runs": len(latencies),
                "seconds": secs,
                "p50": pct(latencies, 0.5),
                "p99": pct(latencies, 0.99),
                "cpu_seconds": cpu,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
