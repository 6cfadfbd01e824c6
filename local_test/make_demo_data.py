#!/usr/bin/env python3
"""Write the demo data set of local_test: customer-support messages labelled by intent.

Three intents, ``billing``, ``delivery`` and ``technical``, are written from hand-made templates
and phrase lists (written for this repository, not taken from any data set), filled with a fixed
seed. Every text is unique, no text appears in two splits, and each split has the same number of
rows per label. Some messages are deliberately close to another intent (a charge for an order
that never shipped, a checkout page that crashes) so that the task is not pure keyword matching.

    python local_test/make_demo_data.py            # (re)write local_test/test_dir/input/data
    python local_test/make_demo_data.py --check    # exit 1 if the committed files differ

Output: ``train/train.csv`` (600 rows), ``validation/validation.csv`` (150) and
``test/test.csv`` (150), each with the header ``text,label``.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import re
import sys
from pathlib import Path

SEED = 20261122
SPLITS: dict[str, int] = {"train": 200, "validation": 50, "test": 50}  # rows per label
DEFAULT_OUT = Path(__file__).resolve().parent / "test_dir" / "input" / "data"

SLOTS: dict[str, list[str]] = {
    "plan": ["basic", "premium", "family", "business", "student", "pro", "starter"],
    "amount": ["$12.99", "$49", "$120", "€40", "€9.99", "£7.50", "£250", "15 dollars", "thirty euros", "$3.20"],
    "card": ["credit card", "debit card", "PayPal account", "bank account", "Visa card", "Mastercard"],
    "statement": ["bank", "credit card", "monthly", "last", "November"],
    "month": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October"],
    "code": ["SPRING20", "WELCOME10", "FREESHIP", "LOYAL15", "SAVE5NOW", "BLACKFRIDAY"],
    "days": ["three", "five", "six", "ten", "12", "14", "nine", "eight", "21"],
    "place": [
        "neighbour's house",
        "front door of the building",
        "post office",
        "parcel locker",
        "reception desk",
        "wrong flat",
        "garden shed",
    ],
    "item": [
        "speaker",
        "charger",
        "blender",
        "keyboard",
        "smart speaker",
        "desk lamp",
        "rain jacket",
        "phone case",
        "coffee grinder",
        "router",
        "smartwatch",
    ],
    "gadget": ["smart speaker", "router", "smartwatch", "doorbell camera", "e-reader", "fitness tracker"],
    "country": ["Canada", "Germany", "Ireland", "Australia", "Norway", "Japan", "Portugal", "Mexico"],
    "weekday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"],
    "screen": ["settings", "profile", "orders", "home", "wishlist", "messages", "account"],
    "errcode": ["500", "502", "403", "E1042", "0x80070005", "404", "NET_ERR_TIMEOUT"],
    "action": [
        "save my profile",
        "upload a photo",
        "change my email address",
        "add a new address",
        "open my order history",
        "log in",
    ],
    "device": ["iPhone", "Android", "iPad", "Windows", "Mac", "tablet"],
    "channel": ["SMS", "email", "text message"],
    "browser": ["Chrome", "Firefox", "Safari", "Edge"],
    "size": ["10 MB", "50 MB", "2 GB", "500 KB"],
    "version": ["4.2", "4.3.1", "5.0", "3.9.7"],
}

TEMPLATES: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for my {plan} subscription this month",
        "why is there a {amount} fee on my {statement} statement",
        "please refund the {amount} you took from my {card}",
        "my {card} was declined when I tried to renew the {plan} plan",
        "how do I update the payment method on my account",
        "the invoice for {month} shows the wrong amount",
        "I cancelled my {plan} plan in {month} but you still billed me",
        "can I get a receipt for my last payment of {amount}",
        "the discount code {code} was not applied to my total",
        "I want to switch my {plan} plan from monthly to yearly billing",
        "you charged me {amount} instead of the advertised price",
        "my refund for order {order} has still not reached my {card}",
        "is VAT included in the price of the {plan} plan",
        "how can I download all my invoices since {month}",
        "there is a pending charge of {amount} from you that I do not recognise",
        "I was charged {amount} for order {order} but it never shipped",
        "the price went up to {amount} without any notice",
        "can you remove my old {card} from the account",
        "why did my {plan} trial turn into a paid subscription",
        "I paid with my {card} but the order says payment pending",
        "please stop the automatic renewal of my {plan} membership",
        "I was billed in euros although I live in {country}",
    ],
    "delivery": [
        "my package has not arrived yet and it has been {days} days",
        "the tracking number for order {order} does not work",
        "can I change the delivery address for order {order}",
        "the courier left my parcel at the {place}",
        "the box arrived damaged and the {item} inside is broken",
        "when will my {item} be shipped",
        "I received the wrong {item} in my parcel",
        "is express shipping available to {country}",
        "the parcel was marked as delivered but I never got it",
        "part of order {order} is missing, the {item} was not in the box",
        "how long does standard delivery take to {country}",
        "can you hold my parcel at the {place} until {weekday}",
        "I need to send the {item} back, how do I get a return label",
        "the driver never rang the bell and took the parcel back",
        "order {order} has been stuck in customs for {days} days",
        "tracking has not moved since {weekday} for my {item}",
        "I ordered two {item}s but only one was delivered",
        "can the {item} be delivered on {weekday} instead",
        "the delivery window was {weekday} morning but nobody came",
        "do you ship the {item} to {country} and what does it cost",
        "my {item} was sent to my old address",
        "the courier says the address for order {order} is incomplete",
    ],
    "technical": [
        "the app crashes every time I open the {screen} screen",
        "I cannot log in, it says my password is wrong even after a reset",
        "the website shows error {errcode} when I try to {action}",
        "the {device} app keeps freezing since version {version}",
        "I never receive the two factor code by {channel}",
        "the page loads forever and then goes blank in {browser}",
        "my {gadget} will not connect to wifi after setup",
        "sync between the {device} app and the website stopped working",
        "notifications stopped working on my {device}",
        "the export button on the {screen} page does nothing",
        "I get a server error when uploading a file larger than {size}",
        "search returns nothing, even for products I know you sell",
        "the firmware update failed and now my {gadget} will not turn on",
        "after the update to {version} the app logs me out every few minutes",
        "the checkout page crashes in {browser} before I can pay",
        "I get error {errcode} as soon as I {action}",
        "the {screen} screen is empty on my {device}",
        "images do not load on the site in {browser}",
        "the {gadget} keeps disconnecting from the {device} app",
        "the app uses all my battery since version {version}",
        "the verification email link says it has expired",
        "dark mode makes the text unreadable on the {screen} screen",
    ],
}

OPENERS = [
    "",
    "",
    "",
    "Hi,",
    "Hello,",
    "Hello team,",
    "Good morning.",
    "Hey there,",
    "Hi support,",
    "Quick question:",
    "Urgent:",
    "I need help.",
    "Not happy.",
    "Sorry to bother you, but",
    "Dear customer service,",
]
CLOSERS = [
    "",
    "",
    "",
    "Thanks.",
    "Please help.",
    "Can you look into this?",
    "This is really frustrating.",
    "What should I do?",
    "Any update would be appreciated.",
    "Thank you in advance!",
    "I have been waiting for an answer for a week.",
    "Please fix this asap.",
    "Regards, a long-time customer.",
    "Cheers",
]

_SLOT = re.compile(r"\{(\w+)\}")


def _fill(template: str, rng: random.Random) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "order":
            return f"#{rng.randint(10000, 99999)}"
        return rng.choice(SLOTS[name])

    return _SLOT.sub(value, template)


def _message(template: str, rng: random.Random) -> str:
    body = _fill(template, rng)
    opener = rng.choice(OPENERS)
    closer = rng.choice(CLOSERS)
    if not opener or opener.endswith((".", "!")):  # a new sentence starts with a capital
        body = body[0].upper() + body[1:]
    end = rng.choice([".", ".", "!", ""]) if not body.endswith("?") else ""
    if body.lower().startswith(("why", "how", "when", "can", "is", "do")):
        end = "?"
    text = " ".join(part for part in (opener, body + end, closer) if part)
    if rng.random() < 0.15:  # people type in lower case too
        text = text.lower()
    return text


def generate(seed: int = SEED) -> dict[str, list[tuple[str, str]]]:
    """Return ``{split: [(text, label), ...]}``: unique texts, balanced labels, shuffled rows."""
    rng = random.Random(seed)
    per_label = sum(SPLITS.values())
    seen: set[str] = set()
    by_label: dict[str, list[str]] = {}
    for label, templates in TEMPLATES.items():
        texts: list[str] = []
        attempts = 0
        while len(texts) < per_label:
            attempts += 1
            if attempts > per_label * 50:
                raise RuntimeError(f"could not write {per_label} unique texts for {label}")
            # Cycle through the templates so that each one appears in every split.
            text = _message(templates[len(texts) % len(templates)], rng)
            if text.lower() not in seen:
                seen.add(text.lower())
                texts.append(text)
        rng.shuffle(texts)
        by_label[label] = texts
    splits: dict[str, list[tuple[str, str]]] = {}
    start = 0
    for split, count in SPLITS.items():
        rows = [(text, label) for label, texts in by_label.items() for text in texts[start : start + count]]
        rng.shuffle(rows)
        splits[split] = rows
        start += count
    return splits


def to_csv(rows: list[tuple[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="data directory (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    stale: list[Path] = []
    for split, rows in generate(args.seed).items():
        path = args.out / split / f"{split}.csv"
        content = to_csv(rows)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != content:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        print(f"wrote {path} ({len(rows)} rows)")
    if stale:
        print("out of date (run local_test/make_demo_data.py): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
