#!/usr/bin/env python
"""Train a teacher: parse -> config -> build -> fit -> save to models/teachers/.

Example: python train_teacher.py --method kdloss --teacher tough --dataset synthface --preset demo
"""

from kdface.cli import training_main

if __name__ == "__main__":
    training_main("teacher", __doc__.splitlines()[1])
