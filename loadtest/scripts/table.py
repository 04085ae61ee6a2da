"""Prints the headline figures of a herald-load suite run (a directory of JSON reports) as the
Markdown table docs/BENCHMARKS.md carries."""

import json
import pathlib
import sys


def phase(report, name):
    return next((p for p in report["phases"] if p["name"] == name), None)


def ms(us):
    return f"{us / 1000:.1f}"


def main(out):
    print("| Run | Headline | p50 / p99 ms | Checks | Broker CPU s / wall s | Broker peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for path in sorted(pathlib.Path(out).glob("*.json")):
        r = json.loads(path.read_text())
        figures, broker = r["figures"], r.get("broker") or {}
        main_phase = next(
            (phase(r, n) for n in ("delivery", "caught-up", "notice", "mark-read", "check-in", "ping", "connect") if phase(r, n)),
            None,
        )
        headline = ", ".join(f"{k} {v:,.0f}" for k, v in figures.items() if k != "resyncs") or (
            f"{main_phase['per_second']:,.0f}/s {main_phase['name']}" if main_phase else ""
        )
        lat = main_phase["latency"] if main_phase else None
        latency = f"{ms(lat['p50_us'])} / {ms(lat['p99_us'])} ({main_phase['name']})" if lat else ""
        checks = "; ".join(
            f"{c['name']} {c['received']}/{c['expected']}, lost {c['lost']}, dup {c['duplicates']}, reord {c['reordered']}"
            for c in r["checks"]
        )
        cpu = f"{broker.get('cpu_seconds', 0):.1f} / {broker.get('wall_seconds', 0):.1f}"
        rss = f"{broker.get('peak_rss_bytes', 0) / 1048576:.0f}"
        print(f"| {path.stem} | {headline} | {latency} | {checks or '-'} | {cpu} | {rss} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/herald-load-suite")
