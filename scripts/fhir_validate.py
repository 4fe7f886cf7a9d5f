"""Validates a FHIR R4 JSON document with fhir.resources (R4 4.0.1 models).

Parses the document as its resourceType, then each Bundle entry's resource as
its own resourceType: unknown elements, wrong types, missing required elements
and malformed dates, ids or URIs fail. Code values are not checked against
their value sets (the models do not know them). Exit 0 valid, 1 invalid, 2 when
it cannot run.
"""
import json
import sys

try:
    import fhir.resources
    from fhir.resources import construct_fhir_element
except Exception as e:  # noqa: BLE001
    print(f"cannot import fhir.resources: {e}", file=sys.stderr)
    sys.exit(2)


def main(path):
    if fhir.resources.__fhir_version__ != "4.0.1":
        print(f"expected R4 models, got {fhir.resources.__fhir_version__}", file=sys.stderr)
        return 2
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    checked = []
    try:
        construct_fhir_element(doc["resourceType"], doc)
        checked.append(doc["resourceType"])
        for i, entry in enumerate(doc.get("entry", [])):
            resource = entry["resource"]
            try:
                construct_fhir_element(resource["resourceType"], resource)
            except Exception as e:  # noqa: BLE001
                print(f"entry[{i}] ({resource.get('resourceType')}): {e}", file=sys.stderr)
                return 1
            checked.append(resource["resourceType"])
    except Exception as e:  # noqa: BLE001
        print(f"{doc.get('resourceType')}: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"valid": True, "fhir_version": fhir.resources.__fhir_version__, "resources": checked}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
