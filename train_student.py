#!/usr/bin/env python
"""Train a student from trained teachers: parse -> config -> build -> fit -> save to models/students/.

Example: python train_student.py --method kdloss --tough models/teachers/synthface_tough.keras
         --tolerant models/teachers/synthface_tolerant.keras --dataset synthface --preset demo
"""

from kdface.cli import parser_for, quiet_tensorflow


def main(argv=None):
    quiet_tensorflow()
    parser, method = parser_for(__doc__.splitlines()[1], argv)
    parser.add_argument(
        "--out", help="where the trained student goes (default models/students/<dataset>_<kd|no_kd>.keras)"
    )
    parser.add_argument(
        "--run-dir", help="run directory: logs, TensorBoard, best/last models (default runs/<method>/...)"
    )
    method.add_student_arguments(parser)
    method.student_main(parser.parse_args(argv))


if __name__ == "__main__":
    main()
