"""Sum up a py-spy profile of the runtime (collapsed stacks) by function.

    python -m bench.profile FILE [--top 30] [--thread kwf-orchestrator]

Prints, per thread, the share of samples each function was running in (inclusive) and
at the top of the stack (self), the busiest first. Idle waits inside librdkafka show as
the consume/poll calls that made them.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

LINE = re.compile(r"^(.*) (\d+)$")


def summarize(path: Path) -> dict[str, tuple[int, Counter[str], Counter[str]]]:
    """Per thread: total samples, inclusive samples per function, self samples per function."""
    threads: dict[str, list] = defaultdict(lambda: [0, Counter(), Counter()])
    for line in path.read_text().splitlines():
        match = LINE.match(line)
        if not match:
            continue
        frames = match.group(1).split(";")
        count = int(match.group(2))
        thread = frames[0]
        stack = [re.sub(r" \((.*?):\d+\)$", r" (\1)", f) for f in frames[1:]]
        entry = threads[thread]
        entry[0] += count
        for frame in set(stack):
            entry[1][frame] += count
        if stack:
            entry[2][stack[-1]] += count
    return {t: (e[0], e[1], e[2]) for t, e in threads.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", default=None, help="only threads whose name contains this")
    args = parser.parse_args()
    for thread, (total, inclusive, own) in sorted(summarize(args.file).items(), key=lambda t: -t[1][0]):
        if args.thread and args.thread not in thread:
            continue
        print(f"\n== {thread}: {total} samples")
        print("   incl%  self%  function")
        for frame, count in inclusive.most_common(args.top):
            print(f"  {100 * count / total:5.1f}  {100 * own[frame] / total:5.1f}  {frame[:150]}")


if __name__ == "__main__":
    main()
