"""``python -m jepa4rec.finetune``: fine-tune JEPA4Rec on one dataset and test the best epoch.

Examples:
  python -m jepa4rec.finetune --config finetune_tiny --init-from runs/pretrain_tiny/final
  python -m jepa4rec.finetune --config finetune_tiny --set dataset=OnlineRetail epochs=5
  python -m jepa4rec.finetune --config finetune_tiny            # from scratch: "without pre-training"
"""
from __future__ import annotations

import argparse
import logging
import sys

from .cli import ArgumentParser, command
from .config import FinetuneConfig, config_from_cli, config_yaml


@command
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m jepa4rec.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML/JSON file or a name in jepa4rec/configs (e.g. finetune_tiny)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="override options (dotted for sections): dataset=OnlineRetail optim.lr=1e-4 epochs=5")
    parser.add_argument("--init-from", default=None, help="pre-trained JEPA4Rec model directory, or a language model (minilm, or a BERT/RoBERTa folder) to fine-tune without recommendation pre-training; omit to train from scratch")
    parser.add_argument("--dataset", default=None, help="shortcut for --set dataset=...")
    parser.add_argument("--output-dir", default=None, help="shortcut for --set output_dir=...")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <output_dir>/last (saved after every epoch), e.g. in a later session")
    parser.add_threads_argument()
    parser.add_argument("--print-config", action="store_true",
                        help="print the run's options (defaults, then --config, then --set and the shortcuts) as YAML "
                             "that --config reads back, and exit without training")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = config_from_cli(FinetuneConfig, args, ("init_from", "dataset", "output_dir"))
    if args.print_config:
        print(config_yaml(cfg), end="")
        return 0
    from .evaluation import format_metrics
    from .finetuning import finetune

    result = finetune(cfg, resume=args.resume)  # checks init_from and the catalogue before writing anything
    print(f"{result['dataset']} test (best epoch {result['best_epoch']}): {format_metrics(result['test'])} "
          f"[{result['train_seconds']:.0f} s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
