""".tflite -> graph IR -> lowered kernel calls -> memory plan -> rendered C project."""
