"""Wire formats: input validation, output records and the JSON Schema files for producers."""
