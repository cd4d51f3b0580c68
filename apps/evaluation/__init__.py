"""Scoring tracks against ground truth: MOTA/IDF1 (motmetrics, MOTChallenge protocol) and HOTA/DetA/AssA."""
