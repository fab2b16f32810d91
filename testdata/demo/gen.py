#!/usr/bin/env python3
"""Writes the demo's source tables (data/*.csv): 61 days of purchases,
returns and checkouts, and a daily users snapshot, modelled on Chronon's
quickstart. Deterministic; run it again only to change the data."""
import csv
import datetime as dt
import os
import random

rng = random.Random(20250801)
here = os.path.dirname(os.path.abspath(__file__))
first = dt.date(2025, 8, 1)
days = [first + dt.timedelta(d) for d in range(61)]  # 2025-08-01 .. 2025-09-30
users = list(range(1, 51))
created = {u: first - dt.timedelta(rng.randint(30, 900)) for u in users}
verified_on = {u: first + dt.timedelta(rng.randint(-30, 70)) for u in users}


def epoch_ms(day, seconds):
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
    return int(start.timestamp() * 1000) + seconds * 1000


def write(name, header, rows):
    with open(os.path.join(here, "data", name), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


purchases, returns, checkouts, snapshot = [], [], [], []
for day in days:
    ds = day.isoformat()
    for i in range(rng.randint(10, 30)):
        user = rng.choice(users)
        price = round(rng.uniform(5, 400), 2)
        purchases.append([f"p{ds}-{i}", user, price, epoch_ms(day, rng.randint(0, 86399)), ds])
    for i in range(rng.choice([1, 1, 2, 3, 5])):
        user = rng.choice(users)
        returns.append([f"r{ds}-{i}", user, round(rng.uniform(5, 200), 2),
                        epoch_ms(day, rng.randint(0, 86399)), ds])
    for i in range(rng.randint(8, 20)):
        checkouts.append([f"c{ds}-{i}", rng.choice(users), epoch_ms(day, rng.randint(0, 86399)), ds])
    for user in users:
        snapshot.append([user, created[user].isoformat(), int(verified_on[user] <= day), ds])

write("purchases.csv", ["purchase_id", "user_id", "purchase_price", "ts", "ds"], purchases)
write("returns.csv", ["return_id", "user_id", "refund_amt", "ts", "ds"], returns)
write("checkouts.csv", ["checkout_id", "user_id", "ts", "ds"], checkouts)
write("users.csv", ["user_id", "account_created_ds", "email_verified", "ds"], snapshot)
