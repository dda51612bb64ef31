"""Count the skipped and xfailed tests of a pytest JUnit report; exit 1 if any test was skipped.

Usage: python .ci/count_skips.py JUNIT_XML
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def main(path: str) -> int:
    skipped, xfailed, total = [], [], 0
    for case in ET.parse(path).getroot().iter("testcase"):
        total += 1
        for element in case.findall("skipped"):
            name = f"{case.get('classname')}::{case.get('name')}: {element.get('message', '')}"
            (xfailed if element.get("type") == "pytest.xfail" else skipped).append(name)
    print(f"CI: {total} tests, {len(skipped)} skipped, {len(xfailed)} expected failures (xfail)")
    for name in xfailed:
        print(f"  xfail {name}")
    for name in skipped:
        print(f"  SKIPPED {name}")
    return 1 if skipped else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python .ci/count_skips.py JUNIT_XML", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
