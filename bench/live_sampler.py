"""Sampling of ``bench/bench_live.py``: every second, CPU and RSS of each child process, the shared services' CPU,
the streams' lag for the store worker and the age of their newest records."""
from __future__ import annotations

import os
import re
import threading
import time

from live_stack import REDIS_DB, STORE, Procs

_T_LAST = re.compile(rb'"t_last": ?(-?[0-9.eE+-]+)')
SERVICES = {"postgres": ("postgres",), "redis": ("redis-server",), "mosquitto": ("mosquitto",)}


class Sampler(threading.Thread):
    """Every second: CPU seconds and RSS of each child process (with its children), CPU of the shared services,
    the streams' lag for the store worker and the age of the newest record on each stream."""

    def __init__(self, procs: Procs, prefix: str, names: list[str]) -> None:
        super().__init__(daemon=True)
        import psutil
        import redis

        self.psutil = psutil
        self.procs, self.prefix, self.names = procs, prefix, names
        self.redis = redis.Redis.from_url(f"redis://127.0.0.1:6379/{REDIS_DB}", socket_timeout=5)
        self.halt = threading.Event()
        self.cpu0: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.rss_peak: dict[str, int] = {}
        self.rss_last: dict[str, int] = {}
        self.series: list[dict] = []
        self.t0 = self.t1 = time.monotonic()
        self._svc: dict[str, list] = {}
        self._svc_cpu: dict[int, float] = {}
        self.svc_cpu: dict[str, float] = {k: 0.0 for k in SERVICES}
        self._dead: dict[str, tuple[float, int]] = {}
        self._played = False  # the emulator said it has played the whole recording (_devices_done)
        self._emu_read = 0    # bytes of its log looked through so far

    def _find_services(self) -> None:
        self._svc = {k: [] for k in SERVICES}
        for p in self.psutil.process_iter(["name"]):
            for k, names in SERVICES.items():
                if (p.info.get("name") or "") in names:
                    self._svc[k].append(p)

    def _proc_totals(self, name: str) -> tuple[float, int] | None:
        p = self.procs.procs.get(name)
        if p is None:
            return None
        try:
            root = self.psutil.Process(p.pid)
            members = [root] + root.children(recursive=True)
        except self.psutil.Error:
            return self._dead.get(name)
        cpu = rss = 0
        for m in members:
            try:
                t = m.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
                rss += m.memory_info().rss
            except self.psutil.Error:
                pass
        self._dead[name] = (cpu, rss)
        return cpu, rss

    def _streams(self) -> dict:
        out = {}
        now = time.time()
        for kind in ("shelf", "obs", "gate"):
            key = f"{self.prefix}:{STORE}:{kind}"
            try:
                groups = self.redis.xinfo_groups(key)
                out[f"lag_{kind}"] = int(sum((g.get("lag") or 0) for g in groups))
                out[f"xlen_{kind}"] = int(self.redis.xlen(key))
                if kind != "gate":
                    last = self.redis.xrevrange(key, count=1)
                    found = _T_LAST.search(last[0][1][b"r"]) if last else None
                    if found:  # not json.loads: an observation record is ~200 kB at 200 shoppers
                        out[f"age_{kind}"] = round(now - float(found.group(1)), 3)
            except Exception:  # the stream does not exist yet
                pass
        return out

    def run(self) -> None:
        self._find_services()
        k = 0
        while not self.halt.wait(1.0):
            self.sample()
            k += 1
            if k % 10 == 0:
                self._find_services()

    def sample(self) -> None:
        row = {"t": round(time.monotonic() - self.t0, 1)}
        for name in self.names:
            got = self._proc_totals(name)
            if got is None:
                continue
            cpu, rss = got
            self.cpu0.setdefault(name, cpu)
            self.cpu[name] = cpu - self.cpu0[name]
            self.rss_peak[name] = max(self.rss_peak.get(name, 0), rss)
            self.rss_last[name] = rss
            row[f"cpu_{name}"] = round(self.cpu[name], 2)
            row[f"rss_{name}"] = rss
        for svc, plist in self._svc.items():
            total = 0.0
            for p in plist:
                try:
                    t = p.cpu_times()
                    c = t.user + t.system
                except self.psutil.Error:
                    continue
                prev = self._svc_cpu.get(p.pid)
                self._svc_cpu[p.pid] = c
                if prev is not None:
                    total += max(0.0, c - prev)
            self.svc_cpu[svc] += total
        emu = self.procs.procs.get("emulator")
        row["emulating"] = emu is not None and emu.poll() is None and not self._devices_done()
        row.update(self._streams())
        try:
            row["load1"] = os.getloadavg()[0]
        except OSError:
            pass
        self.series.append(row)
        self.t1 = time.monotonic()

    def _devices_done(self) -> bool:
        """Whether the emulator has played the whole recording (its ``emulated in …`` line): after it the devices
        are silent while it decides the reviews, so their newest records only age, and the load is the oracle's, not
        the store's (the samples after it are not the session's: ``live_analysis``)."""
        if not self._played:
            start = max(0, self._emu_read - 64)  # from a little before the last look's end: a line it cut is whole
            try:
                with (self.procs.logs / "emulator.log").open("rb") as f:
                    f.seek(start)
                    chunk = f.read()
            except OSError:
                return False
            self._emu_read = start + len(chunk)
            self._played = b"emulated in " in chunk
        return self._played

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
        self.sample()
