"""Detail views for the selected node: hex, decompiled pickle, template, tensor statistics, code."""
