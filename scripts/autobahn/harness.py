#!/usr/bin/env python3
"""Helpers for scripts/autobahn.sh (Python 3, standard library only).

  harness.py free-port
      Print a free TCP port on 127.0.0.1.
  harness.py wait-healthy URL PID SECONDS
      Poll URL until it answers 200; exit 1 if process PID exits first or SECONDS pass.
  harness.py spec TEMPLATE OUT URL OUTDIR [CASES]
      Write the fuzzingclient spec OUT from TEMPLATE with the server URL and OUTDIR filled in;
      CASES (comma-separated patterns) replaces the template's "cases" when given.
  harness.py check OUTDIR WSTEST_LOG
      Read OUTDIR/index.json, print a summary, write OUTDIR/summary.md; exit 1 if any case
      failed, or if wstest did not report every case it said it would run.
"""

import ast
import collections
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request

# Outcomes that pass, for every case.
ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}
# UNIMPLEMENTED passes for no group: the edge implements permessage-deflate (12.* and 13.*).
UNIMPLEMENTED_OK_PREFIXES = ()
# Order of the outcomes in the summary (any other outcome wstest reports comes after these).
ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "WRONG CODE", "UNCLEAN", "FAILED"]


def case_key(case_id):
    return tuple(int(part) if part.isdigit() else 0 for part in case_id.split("."))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        print(sock.getsockname()[1])


def wait_healthy(url, pid, seconds):
    deadline = time.monotonic() + float(seconds)
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            print(f"the edge (pid {pid}) exited before {url} answered", file=sys.stderr)
            return 1
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return 0
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}"
        except (urllib.error.URLError, OSError) as err:
            last = str(getattr(err, "reason", err))
        time.sleep(0.1)
    print(f"{url} did not answer 200 within {seconds} s (last: {last})", file=sys.stderr)
    return 1


def write_spec(template, out, url, outdir, cases=None):
    with open(template, encoding="utf-8") as f:
        spec = json.load(f)
    spec.pop("_comment", None)
    spec["outdir"] = outdir
    for server in spec["servers"]:
        server["url"] = url
    if cases:
        spec["cases"] = [c.strip() for c in cases.split(",") if c.strip()]
    with open(out, "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")
    return 0


def accepted(case_id, outcome):
    if outcome in ACCEPTED:
        return True
    return outcome == "UNIMPLEMENTED" and case_id.startswith(UNIMPLEMENTED_OK_PREFIXES)


def expected_cases(wstest_log):
    """The case ids wstest announced ("Cases = [...]"), or None if it never got that far."""
    with open(wstest_log, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("Cases = ["):
                return ast.literal_eval(line[len("Cases = "):].strip())
    return None


def harness_errors(wstest_log):
    with open(wstest_log, encoding="utf-8", errors="replace") as f:
        return [line.strip() for line in f if line.startswith("Connection to ") and " failed (" in line]


def case_details(outdir, info):
    """Description, expectation and what was observed, from the per-case JSON report."""
    path = os.path.join(outdir, info.get("reportfile", ""))
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError):
        return {}
    return {
        "description": plain(report.get("description", "")),
        "expectation": plain(report.get("expectation", "")),
        "result": report.get("result", ""),
        "resultClose": report.get("resultClose", ""),
        "wasNotCleanReason": report.get("wasNotCleanReason"),
    }


def plain(text):
    """A case's text up to its first HTML tag, whitespace collapsed (as wstest's own index does)."""
    return " ".join(str(text).split("<")[0].split())


def md_escape(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def check(outdir, wstest_log):
    index_path = os.path.join(outdir, "index.json")
    problems = []
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as err:
        print(f"FAIL: no usable {index_path}: {err}")
        return 1
    cases = {}
    for agent_cases in index.values():
        cases.update(agent_cases)
    if len(index) != 1:
        problems.append(f"index.json has {len(index)} agents, expected 1")

    expected = expected_cases(wstest_log)
    if expected is None:
        problems.append(f"wstest never announced its cases (see {wstest_log})")
    else:
        missing = sorted(set(expected) - set(cases), key=case_key)
        if missing:
            problems.append(
                f"{len(missing)} of {len(expected)} cases have no result (wstest stopped early?): "
                + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
            )
    for line in harness_errors(wstest_log):
        problems.append(f"wstest: {line}")
    if not cases:
        problems.append("index.json holds no case results")

    behavior = collections.Counter(info.get("behavior") for info in cases.values())
    behavior_close = collections.Counter(info.get("behaviorClose") for info in cases.values())
    outcomes = [o for o in ORDER if o in behavior or o in behavior_close]
    outcomes += sorted(o for o in set(behavior) | set(behavior_close) if o not in ORDER)

    failing, skipped = [], 0
    for case_id in sorted(cases, key=case_key):
        info = cases[case_id]
        b, bc = info.get("behavior"), info.get("behaviorClose")
        if not (accepted(case_id, b) and accepted(case_id, bc)):
            failing.append((case_id, info))
        elif "UNIMPLEMENTED" in (b, bc):
            skipped += 1
    passed = len(cases) - len(failing) - skipped

    print("Autobahn fuzzingclient results (%d cases)" % len(cases))
    print(f"  {'outcome':<15} {'behavior':>8} {'behaviorClose':>14}")
    for o in outcomes:
        print(f"  {str(o):<15} {behavior.get(o, 0):>8} {behavior_close.get(o, 0):>14}")
    print("  (only OK, NON-STRICT and INFORMATIONAL pass, permessage-deflate's 12.* and 13.* included)")
    details = {}
    if failing:
        print(f"\nFAILED cases ({len(failing)}):")
        for case_id, info in failing:
            d = case_details(outdir, info)
            details[case_id] = d
            print(f"  {case_id}: behavior={info.get('behavior')} behaviorClose={info.get('behaviorClose')}"
                  f" report={os.path.join(outdir, info.get('reportfile', '?'))}")
            if d:
                print(f"      case:     {d['description']}")
                print(f"      expected: {d['expectation']}")
                print(f"      observed: {d['result']} / close: {d['resultClose']}"
                      + (f" ({d['wasNotCleanReason']})" if d.get("wasNotCleanReason") else ""))
    for p in problems:
        print(f"HARNESS PROBLEM: {p}")

    with open(os.path.join(outdir, "summary.md"), "w", encoding="utf-8") as md:
        md.write("# Autobahn fuzzingclient summary\n\n")
        md.write(f"{len(cases)} cases: {passed} passed, {len(failing)} failed, {skipped} skipped.\n\n")
        md.write("| outcome | behavior | behaviorClose |\n| --- | ---: | ---: |\n")
        for o in outcomes:
            md.write(f"| {o} | {behavior.get(o, 0)} | {behavior_close.get(o, 0)} |\n")
        if failing:
            md.write("\n## Failing cases\n\n")
            md.write("| case | behavior | behaviorClose | observed | report |\n| --- | --- | --- | --- | --- |\n")
            for case_id, info in failing:
                d = details.get(case_id, {})
                md.write(f"| {case_id} | {info.get('behavior')} | {info.get('behaviorClose')} | "
                         f"{md_escape(d.get('result', ''))} | {info.get('reportfile', '')} |\n")
        if problems:
            md.write("\n## Harness problems\n\n")
            for p in problems:
                md.write(f"- {md_escape(p)}\n")

    # A plain closing line CI can read.
    print(f"\nAutobahn: {passed} passed, {len(failing)} failed, {skipped} skipped")
    return 1 if failing or problems else 0


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "free-port" and not args:
        free_port()
        return 0
    if cmd == "wait-healthy" and len(args) == 3:
        return wait_healthy(*args)
    if cmd == "spec" and len(args) in (4, 5):
        return write_spec(*args)
    if cmd == "check" and len(args) == 2:
        return check(*args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
