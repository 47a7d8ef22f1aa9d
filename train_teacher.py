#!/usr/bin/env python
"""Train a teacher: parse -> config -> build -> fit -> save to models/teachers/.

Example: python train_teacher.py --method kdloss --teacher tough --dataset synthface --preset demo
"""

from kdface.cli import parser_for, quiet_tensorflow


def main(argv=None):
    quiet_tensorflow()
    parser, method = parser_for(__doc__.splitlines()[1], argv)
    parser.add_argument(
        "--out", help="where the trained teacher goes (default models/teachers/<dataset>_<teacher>.keras)"
    )
    parser.add_argument(
        "--run-dir", help="run directory: logs, TensorBoard, best/last models (default runs/<method>/...)"
    )
    method.add_teacher_arguments(parser)
    method.teacher_main(parser.parse_args(argv))


if __name__ == "__main__":
    main()
