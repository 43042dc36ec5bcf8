#!/usr/bin/env python3
"""Checks servicemonitor.yaml against servicemonitor.schema.json (CI, .ci/run).

kubernetes-validate bundles the Kubernetes schemas only: it skips a ServiceMonitor with
a warning. This checks the fields the file uses, with the jsonschema and PyYAML that
kubernetes-validate installs anyway.
"""
import json
import pathlib
import sys

import jsonschema
import yaml

here = pathlib.Path(__file__).resolve().parent
schema = json.loads((here / "servicemonitor.schema.json").read_text())
docs = [d for d in yaml.safe_load_all((here / "servicemonitor.yaml").read_text()) if d]
errors = [e for d in docs for e in jsonschema.Draft202012Validator(schema).iter_errors(d)]
for e in errors:
    print(f"servicemonitor.yaml: {'/'.join(map(str, e.absolute_path))}: {e.message}")
if not docs:
    print("servicemonitor.yaml: no document")
sys.exit(1 if errors or not docs else 0)
