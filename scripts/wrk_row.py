"""One wrk report as a tab-separated row: name, connections, requests/s, p50 ms,
p99 ms, non-2xx responses, socket errors. Shared by the HTTP benchmark scripts.

    python3 scripts/wrk_row.py WRK_OUTPUT_FILE NAME CONNECTIONS
"""
import re
import sys


def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    x = float(m.group(1))
    return x / 1000 if m.group(2) == "us" else x * 1000 if m.group(2) == "s" else x


text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
sock = re.search(r"Socket errors: (.*)", text)
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{rps:.0f}\t{p50:.2f}\t{p99:.2f}\t"
      f"{errors.group(1) if errors else 0}\t{sock.group(1) if sock else '-'}")
