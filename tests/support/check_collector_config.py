#!/usr/bin/env python3
"""Checks an OpenTelemetry Collector config: it parses, and every pipeline (and the service's
extensions) references only components defined in the file. Prints problems; exit 1 if any."""
import sys

import yaml

cfg = yaml.safe_load(open(sys.argv[1]))
problems = []
service = cfg.get("service") or {}
for ext in service.get("extensions", []):
    if ext not in (cfg.get("extensions") or {}):
        problems.append(f"service.extensions: {ext} is not defined under extensions")
pipelines = service.get("pipelines") or {}
if not pipelines:
    problems.append("service.pipelines is empty")
for name, p in pipelines.items():
    for section in ("receivers", "processors", "exporters"):
        for comp in p.get(section, []):
            if comp not in (cfg.get(section) or {}):
                problems.append(f"pipeline {name}: {section[:-1]} {comp} is not defined under {section}")
    if not p.get("receivers") or not p.get("exporters"):
        problems.append(f"pipeline {name}: needs receivers and exporters")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
