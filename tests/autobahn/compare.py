"""Compares an Autobahn|Testsuite report (index.json) with the expected results of this repository.

    compare.py REPORT_INDEX EXPECTED          prints differences and counts; exit 1 on any FAILED or difference
    compare.py REPORT_INDEX EXPECTED --update rewrites EXPECTED from the report (then review the diff)

EXPECTED maps each case id ("6.4.1") to {"behavior": ..., "behaviorClose": ...}. Runs on Python 2.7 (the
testsuite's virtualenv) and 3.
"""

from __future__ import print_function

import json
import sys

BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]


def case_key(case_id):
    """Sorts "9.10.1" after "9.2.1"."""
    return [int(part) for part in case_id.split(".")]


def load_report(path):
    """The results of the report's single agent: case id -> {behavior, behaviorClose}."""
    with open(path) as f:
        index = json.load(f)
    if len(index) != 1:
        sys.exit("expected one agent in %s, found %d" % (path, len(index)))
    cases = list(index.values())[0]
    return dict(
        (case_id, {"behavior": r["behavior"], "behaviorClose": r["behaviorClose"]})
        for case_id, r in cases.items()
    )


def write_expected(path, results):
    lines = [
        '  "%s": {"behavior": "%s", "behaviorClose": "%s"}'
        % (case_id, results[case_id]["behavior"], results[case_id]["behaviorClose"])
        for case_id in sorted(results, key=case_key)
    ]
    with open(path, "w") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")


def differences(actual, expected):
    """One line per case whose result is not the expected one, or that is missing on either side."""
    out = []
    for case_id in sorted(set(actual) | set(expected), key=case_key):
        got, want = actual.get(case_id), expected.get(case_id)
        if got is None:
            out.append("%s: expected %s, not run" % (case_id, describe(want)))
        elif want is None:
            out.append("%s: %s, not in the expected results" % (case_id, describe(got)))
        elif got != want:
            out.append("%s: expected %s, got %s" % (case_id, describe(want), describe(got)))
    return out


def describe(result):
    return "%s/%s" % (result["behavior"], result["behaviorClose"])


def counts(results, field):
    tally = dict((b, 0) for b in BEHAVIORS)
    for r in results.values():
        tally[r[field]] = tally.get(r[field], 0) + 1
    return "  ".join("%s %d" % (b, n) for b, n in sorted(tally.items(), key=order))


def order(item):
    name = item[0]
    return (BEHAVIORS.index(name) if name in BEHAVIORS else len(BEHAVIORS), name)


def main(argv):
    if len(argv) not in (3, 4) or (len(argv) == 4 and argv[3] != "--update"):
        sys.exit(__doc__)
    actual = load_report(argv[1])
    if len(argv) == 4:
        write_expected(argv[2], actual)
        print("wrote %d cases to %s" % (len(actual), argv[2]))
        return 0
    with open(argv[2]) as f:
        expected = json.load(f)
    print("cases run: %d" % len(actual))
    print("behavior:       " + counts(actual, "behavior"))
    print("behaviorClose:  " + counts(actual, "behaviorClose"))
    failed = sorted(
        (c for c, r in actual.items() if "FAILED" in (r["behavior"], r["behaviorClose"])),
        key=case_key,
    )
    diff = differences(actual, expected)
    for line in diff:
        print("DIFFERENT " + line)
    if failed:
        print("FAILED cases: " + " ".join(failed))
    if failed or diff:
        return 1
    print("all %d cases as expected, none FAILED" % len(actual))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
