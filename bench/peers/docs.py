#!/usr/bin/python3
"""Writes the benchmark's JSON documents: a realistic ~1 KiB API response
(a weather-station reading) and a ~64 KiB one (a page of 110 orders)."""
import json
import random
import sys

random.seed(42)
out = sys.argv[1]

station = {
    "station": {"id": "EGLL-0042", "name": "Heathrow Airport", "lat": 51.4775,
                "lon": -0.461389, "elevation_m": 25, "timezone": "Europe/London"},
    "observed_at": "2026-11-21T20:50:00Z",
    "current": {"temp_c": 8.4, "feels_like_c": 5.9, "humidity": 0.81,
                "pressure_hpa": 1013.2, "wind": {"speed_ms": 5.6, "gust_ms": 9.1, "dir_deg": 240},
                "visibility_m": 9000, "conditions": ["light rain", "overcast"]},
    "forecast": [{"hour": h, "temp_c": round(8 + random.uniform(-2, 2), 1),
                  "precip_mm": round(random.uniform(0, 1.2), 2),
                  "precip_prob": round(random.random(), 2)} for h in range(1, 7)],
    "alerts": [],
    "source": {"provider": "example-met", "license": "CC-BY-4.0", "version": 3},
}
with open(f"{out}/doc-1k.json", "w") as f:
    json.dump(station, f, indent=2)

orders = {"page": 1, "per_page": 110, "total": 110, "orders": []}
for i in range(110):
    orders["orders"].append({
        "id": 1000000 + i, "created_at": f"2026-11-21T{i % 24:02d}:{i % 60:02d}:00Z",
        "status": random.choice(["open", "paid", "shipped", "refunded"]),
        "customer": {"id": random.randint(1, 10**6), "name": f"Customer {i}",
                     "email": f"customer{i}@example.com", "country": random.choice(["GB", "DE", "FR", "US"])},
        "items": [{"sku": f"SKU-{random.randint(1000, 9999)}", "qty": random.randint(1, 5),
                   "price": {"amount": round(random.uniform(1, 200), 2), "currency": "EUR"}}
                  for _ in range(2)],
        "total": {"amount": round(random.uniform(5, 900), 2), "currency": "EUR"},
        "tags": random.sample(["gift", "priority", "b2b", "repeat", "promo"], 2),
    })
with open(f"{out}/doc-64k.json", "w") as f:
    json.dump(orders, f, indent=1)
