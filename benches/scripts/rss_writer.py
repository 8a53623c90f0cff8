"""Writes 100-row transactions at ~10k rows/s for 20 s into readings(id, sensor, value, raw).

Usage: python3 rss_writer.py SOURCE_DB   (see BENCHMARKS.md, "Agent memory")
"""
import os
import sqlite3
import sys
import time

c = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
start = time.time()
n = 0
while time.time() - start < 20:
    t0 = time.time()
    c.execute("BEGIN")
    c.executemany("INSERT INTO readings VALUES (?,?,?,?)",
                  [(n + i, "s%d" % (i % 8), i * 0.5, os.urandom(16)) for i in range(100)])
    c.execute("COMMIT")
    n += 100
    d = 0.01 - (time.time() - t0)
    if d > 0:
        time.sleep(d)
print("rows", n, "rate", round(n / (time.time() - start)))
