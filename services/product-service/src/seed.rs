//! The demo catalog `SEED_DEMO_DATA` loads into an empty database, so a new user of the
//! embedded mode has something to browse, search and order.

use platform_money::{Currency, Money};

use crate::domain::{Category, Description, ImageUrl, ProductName, Sku, Stock};
use crate::service::NewProduct;

/// (name, description, price in cents, stock).
type Item = (&'static str, &'static str, i64, i64);

/// Items by category.
const CATALOG: &[(&str, &[Item])] = &[
    (
        "kitchen",
        &[
            (
                "Ceramic mug",
                "350 ml stoneware mug, dishwasher safe.",
                1299,
                120,
            ),
            (
                "Chef's knife",
                "20 cm forged steel blade with a full tang.",
                7999,
                25,
            ),
            (
                "Cast iron skillet",
                "26 cm pre-seasoned pan for oven and stove.",
                4499,
                30,
            ),
            (
                "Pour-over coffee dripper",
                "Porcelain dripper for size 02 filters.",
                2299,
                60,
            ),
            (
                "Bamboo cutting board",
                "Large end-grain board with juice groove.",
                3499,
                45,
            ),
            (
                "Glass storage jars",
                "Set of four airtight jars, 1 litre each.",
                2799,
                80,
            ),
            (
                "Electric kettle",
                "1.7 litre kettle with temperature control.",
                5999,
                35,
            ),
            (
                "Silicone spatula set",
                "Three heat-resistant spatulas.",
                1499,
                150,
            ),
            (
                "Espresso cups",
                "Pair of double-walled glass cups, 80 ml.",
                1899,
                4,
            ),
        ],
    ),
    (
        "electronics",
        &[
            (
                "Wireless headphones",
                "Over-ear, noise cancelling, 30 hours of battery.",
                19999,
                40,
            ),
            (
                "Mechanical keyboard",
                "Tenkeyless keyboard with hot-swappable switches.",
                11999,
                25,
            ),
            (
                "USB-C charger",
                "65 W charger with two USB-C ports.",
                3999,
                200,
            ),
            (
                "Portable speaker",
                "Waterproof Bluetooth speaker with 12 hours of play.",
                6999,
                55,
            ),
            (
                "Wireless mouse",
                "Ergonomic mouse with silent buttons.",
                2999,
                90,
            ),
            (
                "4K monitor",
                "27 inch IPS display, USB-C with power delivery.",
                39999,
                12,
            ),
            (
                "Smart plug",
                "Wi-Fi plug with energy monitoring.",
                1999,
                300,
            ),
            (
                "E-reader",
                "6 inch glare-free display, warm light.",
                12999,
                3,
            ),
            (
                "Webcam",
                "1080p camera with privacy shutter and two microphones.",
                5499,
                70,
            ),
        ],
    ),
    (
        "books",
        &[
            (
                "The Rust Programming Language",
                "The official guide to Rust, second edition.",
                3999,
                50,
            ),
            (
                "Designing Data-Intensive Applications",
                "Reliable, scalable and maintainable systems.",
                4499,
                40,
            ),
            (
                "Release It!",
                "Design and deploy production-ready software.",
                3799,
                30,
            ),
            (
                "Site Reliability Engineering",
                "How Google runs production systems.",
                4299,
                20,
            ),
            (
                "The Pragmatic Programmer",
                "Your journey to mastery, 20th anniversary edition.",
                3599,
                60,
            ),
            (
                "Building Microservices",
                "Designing fine-grained systems.",
                4199,
                35,
            ),
            (
                "Database Internals",
                "A deep dive into how distributed data systems work.",
                4599,
                15,
            ),
            (
                "Zero to Production in Rust",
                "An opinionated introduction to backend development.",
                3999,
                45,
            ),
            (
                "Refactoring",
                "Improving the design of existing code.",
                4099,
                0,
            ),
        ],
    ),
    (
        "outdoor",
        &[
            (
                "Trail running shoes",
                "Lightweight shoes with a grippy outsole.",
                12999,
                30,
            ),
            (
                "Insulated water bottle",
                "750 ml steel bottle, keeps drinks cold for 24 hours.",
                2499,
                150,
            ),
            (
                "Two-person tent",
                "Freestanding three-season tent, 2.1 kg.",
                24999,
                10,
            ),
            ("Headlamp", "400 lumen rechargeable headlamp.", 3499, 80),
            (
                "Down sleeping bag",
                "Comfort rating of -5 °C, packs small.",
                29999,
                8,
            ),
            (
                "Trekking poles",
                "Carbon fibre, collapsible, pair.",
                8999,
                25,
            ),
            (
                "Daypack 25 l",
                "Ventilated back panel and rain cover.",
                7999,
                40,
            ),
            (
                "Camping stove",
                "Compact gas stove with piezo ignition.",
                4999,
                35,
            ),
            (
                "Rain jacket",
                "Waterproof, breathable three-layer shell.",
                17999,
                20,
            ),
        ],
    ),
    (
        "home",
        &[
            (
                "Linen bed sheets",
                "Stonewashed linen sheet set, double.",
                12999,
                25,
            ),
            (
                "Desk lamp",
                "Dimmable LED lamp with adjustable arm.",
                4999,
                60,
            ),
            ("Wool throw", "Merino wool blanket, 130 × 170 cm.", 8999, 30),
            (
                "Scented candle",
                "Soy wax candle, 45 hours, cedar and vetiver.",
                2199,
                100,
            ),
            (
                "Indoor plant pot",
                "Glazed ceramic pot with drainage saucer.",
                2699,
                75,
            ),
            ("Wall clock", "Silent quartz movement, oak frame.", 3999, 40),
            (
                "Cotton towels",
                "Set of two bath towels, 600 gsm.",
                3299,
                90,
            ),
            (
                "Storage baskets",
                "Set of three woven seagrass baskets.",
                4499,
                2,
            ),
            ("Doormat", "Coir doormat, 40 × 60 cm.", 1999, 120),
        ],
    ),
    (
        "toys",
        &[
            (
                "Wooden building blocks",
                "100 blocks in natural and coloured beech.",
                3999,
                50,
            ),
            (
                "Jigsaw puzzle 1000",
                "1000 pieces, landscape of the Dolomites.",
                1999,
                70,
            ),
            (
                "Board game: Settlers",
                "Trade, build and settle, 3 to 4 players.",
                4499,
                40,
            ),
            (
                "Remote control car",
                "1:18 off-road car with rechargeable battery.",
                5999,
                25,
            ),
            (
                "Plush bear",
                "Soft bear, 30 cm, machine washable.",
                2499,
                90,
            ),
            ("Kite", "Single-line delta kite for beginners.", 2999, 35),
            (
                "Chess set",
                "Weighted pieces with a folding walnut board.",
                6999,
                20,
            ),
            ("Marble run", "120-piece construction set.", 4999, 30),
            ("Card game: Uno", "The classic card game.", 999, 200),
        ],
    ),
];

/// The demo products (54, over six categories); a few are low on stock and one is sold out,
/// so filters and `inventory.low` have something to show.
pub fn demo_catalog() -> Vec<NewProduct> {
    let mut products = Vec::new();
    for (category, items) in CATALOG {
        for (index, (name, description, cents, stock)) in items.iter().enumerate() {
            let sku = format!(
                "{}-{:03}",
                category.chars().take(3).collect::<String>(),
                index + 1
            );
            let slug: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            let product = (|| {
                Some(NewProduct {
                    sku: Sku::parse(&sku).ok()?,
                    name: ProductName::parse(name).ok()?,
                    description: Description::parse(description).ok()?,
                    category: Category::parse(category).ok()?,
                    price: Money::new(*cents, Currency::EUR).ok()?,
                    stock: Stock::new(*stock).ok()?,
                    image_url: ImageUrl::parse(&format!("https://images.example.com/{slug}.jpg"))
                        .ok(),
                })
            })();
            if let Some(product) = product {
                products.push(product);
            }
        }
    }
    products
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_catalog_is_valid_and_large_enough() {
        let products = demo_catalog();
        let entries: usize = CATALOG.iter().map(|(_, items)| items.len()).sum();
        assert_eq!(products.len(), entries, "every entry parses");
        assert!(products.len() >= 50);
        let categories: std::collections::BTreeSet<_> =
            products.iter().map(|p| p.category.to_string()).collect();
        assert!(categories.len() >= 5);
        let skus: std::collections::BTreeSet<_> =
            products.iter().map(|p| p.sku.to_string()).collect();
        assert_eq!(skus.len(), products.len(), "SKUs are unique");
    }
}
