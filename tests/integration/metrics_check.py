#!/usr/bin/python3
"""Checks Prometheus text exposition pages (a service's GET /metrics) the way
the tools that read them do, and fails on what they would misread.

    metrics_check.py FILE...

For each file, four checks; every problem is one line "FILE: check: what",
and the exit status is 1 when there was any (0 when none, 2 on bad usage):

  grouping    every sample comes after its own family's TYPE line and
              before the next family's; each family has one HELP and one
              TYPE, HELP first (the text format's rule, line by line).
  reference   the reference parser (Debian's python3-prometheus-client,
              prometheus_client.parser) returns each family exactly once,
              each with its HELP and a TYPE.  A family split in two comes
              back twice, the second time "unknown" and without HELP.
  openmetrics the same page converted to OpenMetrics (a counter family
              loses its _total in HELP/TYPE, "# EOF" ends the page) read
              by prometheus_client.openmetrics.parser, which refuses a
              split family ("Clashing name").
  promtool    `promtool check metrics` (Debian's prometheus package): its
              lint (counter names end in _total, base units, HELP text).
              It accepts a split family, so it is not the only check.

Debian's packages live under /usr/bin/python3, hence the interpreter line.
"""
import re
import shutil
import subprocess
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families as families

SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count"), "counter": ("",)}
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def family_of(sample, family, kind):
    """1 when the sample name belongs to the family of that name and kind."""
    if sample == family:
        return True
    return any(sample == family + s for s in SUFFIXES.get(kind, ()) if s)


def check_grouping(text):
    problems, seen_type, seen_help = [], set(), set()
    current, kind = None, None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            if len(parts) < 4 or not NAME.fullmatch(parts[2]):
                problems.append(f"line {n}: malformed: {line!r}")
                continue
            name = parts[2]
            if line.startswith("# HELP "):
                if name in seen_help:
                    problems.append(f"line {n}: a second HELP for {name}: the family is split")
                seen_help.add(name)
                if name in seen_type:
                    problems.append(f"line {n}: HELP of {name} after its TYPE")
                current, kind = name, None
            else:
                if name in seen_type:
                    problems.append(f"line {n}: a second TYPE for {name}: the family is split")
                seen_type.add(name)
                if name not in seen_help:
                    problems.append(f"line {n}: {name} has no HELP before its TYPE")
                current, kind = name, parts[3].strip()
            continue
        if line.startswith("#") or not line.strip():
            continue
        m = NAME.match(line)
        sample = m.group(0) if m else line
        if current is None or kind is None or not family_of(sample, current, kind):
            problems.append(f"line {n}: sample {line!r} is not in its family's group "
                            f"(after # TYPE {current if kind else '-'})")
    return problems


def check_reference(text):
    problems, seen = [], {}
    try:
        fams = list(families(text))
    except Exception as e:  # the parser's own words
        return [f"does not parse: {e}"]
    for f in fams:
        for s in f.samples:
            seen.setdefault(s.name, []).append(f.name)
        if f.type == "unknown":
            problems.append(f"family {f.name} has no TYPE (samples outside their family's group read as a new family)")
        if not f.documentation:
            problems.append(f"family {f.name} has no HELP")
    names = [f.name for f in fams]
    for name in sorted(set(names)):
        if names.count(name) > 1:
            problems.append(f"family {name} appears {names.count(name)} times")
    for sample, fs in sorted(seen.items()):
        if len(set(fs)) > 1:
            problems.append(f"samples of {sample} are in {len(set(fs))} families ({', '.join(sorted(set(fs)))}): "
                            "the family is split")
    return problems


def to_openmetrics(text):
    """The text format as OpenMetrics: counters are named without _total in HELP and TYPE; # EOF at the end."""
    counters = {m.group(1) for m in re.finditer(r"^# TYPE (\S+) counter$", text, re.M)}
    out = []
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if line.startswith(("# HELP ", "# TYPE ")) and parts[2] in counters and parts[2].endswith("_total"):
            parts[2] = parts[2][: -len("_total")]
            line = " ".join(parts)
        out.append(line)
    return "\n".join(out) + "\n# EOF\n"


def check_openmetrics(text):
    try:
        list(om_families(to_openmetrics(text)))
    except Exception as e:
        return [f"refused: {e}"]
    return []


def check_promtool(path):
    promtool = shutil.which("promtool")
    if promtool is None:
        return ["promtool is not installed (Debian package prometheus)"]
    with open(path, "rb") as f:
        r = subprocess.run([promtool, "check", "metrics"], stdin=f, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        said = (r.stdout + r.stderr).strip().replace("\n", "; ")
        return [f"exit {r.returncode}: {said}"]
    return []


def main(argv):
    if len(argv) < 2:
        print("usage: metrics_check.py FILE...", file=sys.stderr)
        return 2
    bad = 0
    for path in argv[1:]:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for check, problems in (("grouping", check_grouping(text)), ("reference", check_reference(text)),
                                ("openmetrics", check_openmetrics(text)), ("promtool", check_promtool(path))):
            for p in problems:
                print(f"{path}: {check}: {p}")
                bad += 1
    if bad == 0:
        print(f"metrics_check: {len(argv) - 1} page(s) pass grouping, reference, openmetrics and promtool")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
