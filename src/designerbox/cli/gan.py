"""`designerbox gan train | interpolate | variations`: the GAN family's own commands. Wired into the
parser by cli.build_parser."""

from __future__ import annotations

from pathlib import Path

from designerbox.cli.common import CLIError, check_writable


def cmd_gan(args) -> int:
    """GAN tools: train (resumable), interpolate between two (prompt, seed) ends, variations of one image."""
    if args.action == "train":
        from designerbox.training.train_gan import GANTrainConfig, train

        generator = {"channels": args.channels} if args.channels else {}
        train(GANTrainConfig(data=args.data, model_dir=args.model_dir, run_dir=args.run_dir, generator=generator,
                             minutes=args.minutes, max_steps=args.max_steps, batch_size=args.batch_size,
                             device=args.device, threads=args.threads, checkpoint_minutes=args.checkpoint_minutes))
        return 0
    from designerbox.store.png_metadata import read_record, write_atomic
    from designerbox.studio import Studio
    from designerbox.tools import gan_latents

    out = Path(args.output)
    if out.suffix.lower() not in (".png", ".gif"):
        raise CLIError(f"output {out} must end in .png (a strip) or .gif (an animation)")
    check_writable(out)
    model_id, prompt, seed, truncation = args.model, args.prompt, args.seed, args.truncation
    if getattr(args, "source", None):  # variations of a recorded image: its model, caption, seed, psi
        if prompt:
            raise CLIError("give a prompt or --from IMAGE, not both")
        record = read_record(Path(args.source))
        model_id, prompt, seed = model_id or record["model"]["id"], record["conditioning"]["prompt"], record["seed"]
        truncation = truncation if truncation is not None else record["request"].get("truncation")
    if not prompt:
        raise CLIError("a prompt is needed" + (" (or --from IMAGE)" if args.action == "variations" else ""))
    manifest, model = Studio().model(model_id or DEFAULT_GAN)
    if args.action == "interpolate":
        seeds = args.seeds or [0, 1]
        frames, record = gan_latents.interpolation(manifest, model, (prompt, args.to or prompt), (seeds[0], seeds[-1]),
                                                   args.frames, truncation)
    else:
        frames, record = gan_latents.variations(manifest, model, prompt, seed or 0, args.n, args.strength, truncation)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, gan_latents.encode_frames(frames, record, out.suffix.lower()[1:], scale=args.scale))
    print(out)
    return 0


DEFAULT_GAN = "dbx-gan-v0"


def add_parsers(sub) -> None:
    gn = sub.add_parser("gan", help="GAN tools: train, interpolate, variations")
    gsub = gn.add_subparsers(dest="action", required=True)
    for name, helptext in (("interpolate", "a strip (.png) or animation (.gif) from one (prompt, seed) to another"),
                           ("variations", "an image and small moves around its latent, as a strip or animation")):
        gi = gsub.add_parser(name, help=helptext)
        gi.add_argument("prompt", nargs="?")
        gi.add_argument("--model", help=f"a GAN model id (default {DEFAULT_GAN})")
        gi.add_argument("--truncation", type=float, help="truncation psi (default: the model's)")
        gi.add_argument("--scale", type=int, default=2, help="enlarge each frame this many times (nearest)")
        gi.add_argument("-o", "--output", default=f"outputs/gan-{name}.png", help="a .png strip or a .gif")
    gi = gsub.choices["interpolate"]
    gi.add_argument("--to", help="the prompt at the other end (default: the same prompt)")
    gi.add_argument("--seeds", type=int, nargs=2, metavar=("A", "B"), help="the seeds at the two ends (default 0 1)")
    gi.add_argument("--frames", type=int, default=8)
    gv = gsub.choices["variations"]
    gv.add_argument("--from", dest="source", metavar="IMAGE", help="vary the image this PNG records")
    gv.add_argument("--seed", type=int, help="the seed of the image to vary (default 0)")
    gv.add_argument("-n", type=int, default=7, help="how many variations")
    gv.add_argument("--strength", type=float, default=0.3, help="0: the same image .. 1: unrelated images")
    gt = gsub.add_parser("train", help="train a text-conditioned GAN (resumable; exports at every checkpoint)")
    gt.add_argument("--data", default="data/full-v1")
    gt.add_argument("--model-dir", required=True, help="model folder (created when it has no config.json)")
    gt.add_argument("--run-dir", required=True, help="checkpoints of this run; resumed when present")
    gt.add_argument("--channels", type=int, nargs="+", help="generator channels at 4x4, 8x8, ... (new folders)")
    gt.add_argument("--minutes", type=float, default=60)
    gt.add_argument("--max-steps", type=int, default=0)
    gt.add_argument("--batch-size", type=int, default=32)
    gt.add_argument("--device", default="auto")
    gt.add_argument("--threads", type=int, default=0)
    gt.add_argument("--checkpoint-minutes", type=float, default=5)
    gn.set_defaults(func=cmd_gan, seed=None, source=None)
