"""Validates observed API responses and websocket frames against the OpenAPI
document (its schemas are JSON Schema 2020-12): usage validate_openapi.py
OPENAPI.json OBSERVED.json, where OBSERVED is {"cases": [{path, method,
status, body}], "frames": [...]}. Prints every mismatch; exits 1 if any."""

import json, sys
from jsonschema import Draft202012Validator
spec = json.load(open(sys.argv[1]))
observed = json.load(open(sys.argv[2]))
def escape(part):
    return part.replace("~", "~0").replace("/", "~1")
def check(pointer, instance, what):
    root = dict(spec)
    root["$ref"] = pointer
    return [f"{what}: {error.message} at {list(error.absolute_path)}" for error in Draft202012Validator(root).iter_errors(instance)]
problems = []
for case in observed["cases"]:
    operation = spec["paths"][case["path"]][case["method"]]
    status = str(case["status"])
    what = f'{case["method"].upper()} {case["path"]} -> {status}'
    if status not in operation["responses"]:
        problems.append(f"{what}: status not documented")
        continue
    pointer = f'#/paths/{escape(case["path"])}/{case["method"]}/responses/{status}/content/application~1json/schema'
    problems += check(pointer, case["body"], what)
for frame in observed["frames"]:
    problems += check("#/components/schemas/Frame", frame, f'frame {frame.get("type")}')
print("\n".join(problems))
print(f'{len(observed["cases"])} responses and {len(observed["frames"])} frames checked')
sys.exit(1 if problems else 0)
