"""Fail on known vulnerabilities that have a fix, in the locked dependencies.

Runs pip-audit on requirements.lock (resolved, not installed) and fails only
when a vulnerable package has a fixed release to move to; unfixable advisories
are printed for the record.
"""

from __future__ import annotations

import json
import subprocess
import sys

out = subprocess.run(
    [
        sys.executable,
        "-m",
        "pip_audit",
        "-r",
        "requirements.lock",
        "--format",
        "json",
        "--progress-spinner",
        "off",
        "--disable-pip",
        "--no-deps",
    ],
    capture_output=True,
    text=True,
)
if not out.stdout.strip():
    print(out.stderr, file=sys.stderr)
    sys.exit(2)
report = json.loads(out.stdout)
fixable = []
for dep in report.get("dependencies", []):
    for vuln in dep.get("vulns", []):
        line = f"{dep['name']} {dep['version']}: {vuln['id']} (fix: {', '.join(vuln['fix_versions']) or 'none'})"
        print(line)
        if vuln["fix_versions"]:
            fixable.append(line)
print(
    f"{len(report.get('dependencies', []))} locked packages audited; {len(fixable)} fixable vulnerabilities"
)
sys.exit(1 if fixable else 0)
