"""Face recognition: identity data and the InsightFace ``.bin`` verification pairs (LFW, AgeDB-30,
CFP-FP) read through the restricted unpickler. The recognition methods (F-SKD/A-SKD) build on it.
"""
