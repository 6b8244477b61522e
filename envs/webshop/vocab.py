"""The vocabulary of the built-in WebShop catalog: categories, product types, brands, attributes,
options and the phrases product pages and instructions are written from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProductType:
    noun: str  # what a shopper searches for; also the product's `query`
    path: tuple[str, str]  # category levels below the category root
    attributes: tuple[str, ...]  # what a product of this type may have ("gluten free")
    options: dict[str, tuple[str, ...]]  # option name -> all values a product may offer
    price: tuple[float, float]  # price range in dollars
    styles: tuple[str, ...]  # title words between the brand and the noun
    use: str  # "for ..." phrase of the description
    plural: bool = False  # "i need wireless earbuds", not "a wireless earbuds"


@dataclass(frozen=True)
class Category:
    name: str
    root: str  # the first level of `product_category`
    brands: tuple[str, ...]
    types: tuple[ProductType, ...]


def _t(
    noun: str,
    path: str,
    attributes: str,
    options: dict[str, tuple[str, ...]],
    price: tuple[float, float],
    styles: str,
    use: str,
    plural: bool = False,
) -> ProductType:
    """A product type written compactly: path levels separated by " / ", lists by ", "."""
    first, second = path.split(" / ")
    return ProductType(
        noun,
        (first, second),
        tuple(attributes.split(", ")),
        options,
        price,
        tuple(styles.split(", ")),
        use,
        plural,
    )


FASHION_SIZES = ("x-small", "small", "medium", "large", "x-large", "xx-large")
SHOE_SIZES = ("6", "7", "8", "9", "10", "11", "12")

CATEGORIES = (
    Category(
        "beauty",
        "Beauty & Personal Care",
        ("Lumora", "Velisse", "PureGlow", "Aveline", "Solbright", "Maison Rue", "Herbora", "Kinfolk Skin"),
        (
            _t(
                "shampoo",
                "Hair Care / Shampoos",
                "sulfate free, paraben free, tea tree, argan oil, dry hair, "
                "color safe, cruelty free, hair growth",
                {
                    "size": ("8 fl oz", "12 fl oz", "16 fl oz", "33.8 fl oz"),
                    "scent": ("coconut", "lavender", "citrus", "unscented", "eucalyptus"),
                },
                (7, 32),
                "Daily, Clarifying, Hydrating, Volumizing",
                "washing and conditioning every hair type",
            ),
            _t(
                "face moisturizer",
                "Skin Care / Face Moisturizers",
                "hyaluronic acid, fragrance free, sensitive skin, "
                "spf 30, oil free, anti aging, vitamin c, dermatologist tested",
                {"size": ("1.7 ounce", "2.5 ounce", "3.4 ounce")},
                (9, 48),
                "Daily, Overnight, Renewing, Hydra",
                "morning and night skin care",
            ),
            _t(
                "lipstick",
                "Makeup / Lips",
                "long lasting, matte finish, cruelty free, vegan, moisturizing, waterproof, paraben free",
                {"color": ("ruby red", "nude pink", "mauve", "coral", "plum", "berry wine")},
                (5, 28),
                "Velvet, Satin, Creamy, Bold",
                "everyday and evening looks",
            ),
            _t(
                "sunscreen",
                "Skin Care / Sunscreens",
                "spf 50, reef safe, water resistant, mineral based, "
                "fragrance free, sensitive skin, non greasy",
                {"size": ("3 fl oz", "6 fl oz", "10 fl oz")},
                (6, 30),
                "Sport, Daily, Kids, Clear",
                "beach days, sports and everyday sun protection",
            ),
            _t(
                "hair dryer",
                "Hair Care / Styling Tools",
                "ionic technology, fast drying, lightweight, "
                "low noise, cool shot button, foldable handle, diffuser attachment",
                {"color": ("black", "white", "rose gold", "teal")},
                (18, 95),
                "Pro, Compact, Salon, Travel",
                "quick blow drying at home and on trips",
            ),
            _t(
                "eyeshadow palette",
                "Makeup / Eyes",
                "highly pigmented, long lasting, cruelty free, vegan, shimmer and matte, blendable",
                {"style": ("warm neutrals", "smoky", "sunset", "pastel")},
                (8, 45),
                "Artist, Everyday, Glam, Studio",
                "day and night eye looks",
            ),
        ),
    ),
    Category(
        "electronics",
        "Electronics",
        ("Voltix", "Auralink", "Nexon", "Brightcore", "Zentra", "Kairo", "Ohmly", "Trekbyte"),
        (
            _t(
                "wireless earbuds",
                "Headphones / Earbud Headphones",
                "noise cancelling, bluetooth 5.3, "
                "long battery life, water resistant, fast charging, touch control, hands free calling",
                {"color": ("black", "white", "navy", "sage")},
                (19, 120),
                "Pro, Air, Sport, Mini",
                "music, calls and workouts",
                plural=True,
            ),
            _t(
                "phone case",
                "Cell Phone Accessories / Cases",
                "shockproof, wireless charging compatible, "
                "drop protection, raised edges, kickstand, anti scratch, slim design",
                {
                    "size": ("iphone 15", "iphone 15 pro", "galaxy s24", "pixel 8"),
                    "color": ("black", "clear", "purple", "olive"),
                },
                (8, 35),
                "Armor, Edge, Rugged, Grip",
                "everyday phone protection",
            ),
            _t(
                "usb c charger",
                "Cell Phone Accessories / Chargers",
                "fast charging, gan technology, "
                "foldable plug, dual port, overheat protection, travel friendly",
                {"style": ("20w", "45w", "65w", "100w")},
                (12, 60),
                "Rapid, Nano, Wall, Dual",
                "phones, tablets and laptops",
            ),
            _t(
                "portable power bank",
                "Cell Phone Accessories / Power Banks",
                "fast charging, led display, usb c input, airline approved, slim design, multiple outputs",
                {"size": ("10000mah", "20000mah", "26800mah")},
                (16, 70),
                "Slim, Max, Go, Ultra",
                "charging on the go",
            ),
            _t(
                "bluetooth speaker",
                "Portable Audio / Speakers",
                "waterproof, deep bass, long battery life, stereo pairing, built in microphone, shockproof",
                {"color": ("black", "teal", "red", "camo")},
                (20, 140),
                "Boom, Wave, Pulse, Rock",
                "parties, camping and the shower",
            ),
            _t(
                "hdmi cable",
                "Computer Accessories / Cables",
                "4k 120hz, braided nylon, gold plated, high speed, ethernet support, hdr compatible",
                {"size": ("3 ft", "6 ft", "10 ft", "15 ft")},
                (6, 28),
                "Ultra, Premium, Flex, Pro",
                "tvs, monitors and game consoles",
            ),
        ),
    ),
    Category(
        "fashion",
        "Clothing, Shoes & Jewelry",
        ("Northwind", "Calla", "Urban Fable", "Driftline", "Marlowe", "Tessa Jay", "Highpeak", "Oakhaven"),
        (
            _t(
                "t-shirt",
                "Men / Shirts",
                "cotton, short sleeve, crew neck, machine washable, moisture wicking, relaxed fit, tagless",
                {
                    "size": FASHION_SIZES,
                    "color": ("black", "white", "navy", "heather grey", "burgundy", "khaki"),
                },
                (9, 30),
                "Essential, Classic, Everyday, Graphic",
                "casual wear and layering",
            ),
            _t(
                "running shoes",
                "Women / Shoes",
                "lightweight, breathable mesh, memory foam, non slip, arch support, shock absorbing",
                {"size": SHOE_SIZES, "color": ("black", "white", "pink", "teal")},
                (30, 120),
                "Cloud, Stride, Trail, Swift",
                "running, walking and gym training",
                plural=True,
            ),
            _t(
                "summer dress",
                "Women / Dresses",
                "floral print, v neck, short sleeve, pockets, flowy, knee length, button front",
                {"size": FASHION_SIZES, "color": ("blue", "yellow", "green", "black", "coral")},
                (19, 60),
                "Sundown, Breezy, Garden, Boho",
                "beach days, vacations and parties",
            ),
            _t(
                "hoodie",
                "Men / Sweatshirts",
                "fleece lined, drawstring hood, kangaroo pocket, zip up, long sleeve, heavyweight",
                {"size": FASHION_SIZES, "color": ("black", "charcoal", "navy", "olive", "maroon")},
                (22, 65),
                "Everyday, Campus, Pullover, Lodge",
                "cool evenings and workouts",
            ),
            _t(
                "yoga pants",
                "Women / Activewear",
                "high waist, tummy control, squat proof, four way stretch, side pockets, moisture wicking",
                {"size": FASHION_SIZES, "color": ("black", "navy", "grey", "plum")},
                (15, 45),
                "Flow, Studio, Zen, Align",
                "yoga, running and lounging",
                plural=True,
            ),
            _t(
                "rain jacket",
                "Men / Outerwear",
                "waterproof, packable, hooded, windproof, breathable, zip pockets, lightweight",
                {"size": FASHION_SIZES, "color": ("black", "navy", "orange", "olive")},
                (35, 110),
                "Storm, Trail, Coastal, Summit",
                "hiking, travel and rainy commutes",
            ),
        ),
    ),
    Category(
        "food",
        "Grocery & Gourmet Food",
        (
            "Harvest Lane",
            "Blue Mesa",
            "Goodroot",
            "Little Orchard",
            "Sierra Kitchen",
            "Farmstead",
            "Copper Pot",
            "Wildgrain",
        ),
        (
            _t(
                "hot sauce",
                "Condiments / Hot Sauce",
                "gluten free, sugar free, non gmo, low sodium, vegan, "
                "keto friendly, small batch, all natural",
                {
                    "size": ("5 fl oz", "12 ounce", "pack of 3"),
                    "flavor name": ("habanero", "chipotle", "ghost pepper", "garlic", "jalapeno"),
                },
                (4, 24),
                "Original, Smoky, Fiery, Craft",
                "tacos, wings, eggs and marinades",
            ),
            _t(
                "coffee beans",
                "Beverages / Coffee",
                "whole bean, organic, fair trade, single origin, low acid, arabica, small batch roasted",
                {
                    "size": ("12 ounce", "2 pound", "5 pound"),
                    "flavor name": ("light roast", "medium roast", "dark roast", "espresso roast"),
                },
                (9, 45),
                "Morning, Reserve, Mountain, House",
                "drip, french press and cold brew",
                plural=True,
            ),
            _t(
                "protein bars",
                "Snacks / Nutrition Bars",
                "high protein, low sugar, gluten free, keto friendly, "
                "plant based, non gmo, no artificial sweeteners",
                {
                    "size": ("pack of 6", "pack of 12", "pack of 24"),
                    "flavor name": ("peanut butter", "chocolate chip", "cookie dough", "lemon"),
                },
                (10, 42),
                "Power, Daily, Trail, Crunch",
                "breakfast on the go and post workout snacks",
                plural=True,
            ),
            _t(
                "herbal tea",
                "Beverages / Tea",
                "caffeine free, organic, non gmo, kosher, individually wrapped, no artificial flavors",
                {
                    "size": ("20 count", "40 count", "100 count"),
                    "flavor name": ("peppermint", "chamomile", "ginger", "hibiscus", "rooibos"),
                },
                (5, 25),
                "Calm, Evening, Garden, Wellness",
                "relaxing evenings and cozy mornings",
            ),
            _t(
                "olive oil",
                "Pantry / Oils",
                "extra virgin, cold pressed, organic, non gmo, first harvest, single estate",
                {"size": ("500 ml", "1 liter", "3 liter")},
                (9, 55),
                "Estate, Tuscan, Reserve, Kitchen",
                "salads, dipping and everyday cooking",
            ),
            _t(
                "mixed nuts",
                "Snacks / Nuts",
                "unsalted, roasted, resealable bag, high protein, non gmo, gluten free, kosher",
                {
                    "size": ("16 ounce", "2 pound", "3 pound"),
                    "flavor name": ("sea salt", "honey roasted", "smoked", "raw"),
                },
                (8, 35),
                "Deluxe, Trail, Party, Select",
                "snacking, baking and trail mix",
                plural=True,
            ),
        ),
    ),
    Category(
        "furniture",
        "Home & Kitchen",
        (
            "Oakline",
            "Nestwell",
            "Arden Home",
            "Loftly",
            "Birchgrove",
            "Casa Nova",
            "Stillwater",
            "Hearthstone",
        ),
        (
            _t(
                "office chair",
                "Furniture / Home Office Chairs",
                "ergonomic, lumbar support, adjustable height, "
                "breathable mesh, 360 swivel, padded armrests, easy assembly",
                {"color": ("black", "grey", "white", "blue")},
                (60, 280),
                "Executive, Task, Mesh, Comfort",
                "home offices and long work days",
            ),
            _t(
                "bookshelf",
                "Furniture / Bookcases",
                "easy assembly, solid wood, wall anchor, open shelves, space saving, industrial style",
                {
                    "size": ("3 tier", "4 tier", "5 tier"),
                    "color": ("walnut", "white", "black", "rustic brown"),
                },
                (40, 190),
                "Ladder, Corner, Cube, Loft",
                "living rooms, offices and bedrooms",
            ),
            _t(
                "area rug",
                "Home Decor / Area Rugs",
                "non slip, machine washable, low pile, stain resistant, pet friendly, soft touch",
                {
                    "size": ("5x7", "8x10", "2x3", "runner 2x8"),
                    "color": ("ivory", "navy", "grey", "terracotta"),
                },
                (35, 240),
                "Boho, Moroccan, Vintage, Modern",
                "living rooms, bedrooms and hallways",
            ),
            _t(
                "table lamp",
                "Lighting / Table Lamps",
                "usb charging port, dimmable, touch control, "
                "led bulb included, fabric shade, energy efficient",
                {"color": ("black", "white", "brass", "green")},
                (20, 90),
                "Bedside, Desk, Ceramic, Arc",
                "bedside tables and reading corners",
            ),
            _t(
                "bed sheet set",
                "Bedding / Sheet Sets",
                "deep pocket, breathable, wrinkle resistant, machine washable, cooling, hypoallergenic",
                {
                    "size": ("twin", "full", "queen", "king"),
                    "color": ("white", "grey", "sage", "navy", "blush"),
                },
                (25, 95),
                "Hotel, Cooling, Percale, Sateen",
                "restful sleep all year",
            ),
            _t(
                "floating shelves",
                "Home Decor / Wall Shelves",
                "wall mounted, solid wood, hardware included, space saving, easy installation, rustic",
                {
                    "size": ("set of 2", "set of 3", "set of 4"),
                    "color": ("natural", "black", "white", "espresso"),
                },
                (15, 70),
                "Farmhouse, Ledge, Display, Modern",
                "kitchens, bathrooms and living rooms",
                plural=True,
            ),
        ),
    ),
)

REVIEW_LINES = (
    (5, "Exactly what I wanted", "Works great and arrived quickly. Would buy again."),
    (5, "Love it", "Great quality for the price. Recommended to my friends."),
    (4, "Pretty good", "Does the job well. Packaging could be better."),
    (3, "It's okay", "Not bad, but not as nice as in the pictures."),
    (2, "Disappointed", "Stopped working after a few weeks of use."),
    (1, "Not for me", "Returned it. It did not match the listing."),
)
