#!/usr/bin/env python
"""Train a student from trained teachers: parse -> config -> build -> fit -> save to models/students/.

Example: python train_student.py --method kdloss --tough models/teachers/synthface_tough.keras
         --tolerant models/teachers/synthface_tolerant.keras --dataset synthface --preset demo
"""

from kdface.cli import training_main

if __name__ == "__main__":
    training_main("student", __doc__.splitlines()[1])
