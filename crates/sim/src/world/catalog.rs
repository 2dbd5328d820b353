//! The fixed lists the world is drawn from: names, makes and models, opcodes, transport
//! options and the notes customers leave. Plausible rather than exhaustive; every value is
//! made up.

use rand::Rng;
use rand::seq::IndexedRandom;

/// First names for customers and advisors.
pub const FIRST_NAMES: &[&str] = &[
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Mateo", "Sophia", "Lucas", "Isabella", "Ethan",
    "Mia", "James", "Amelia", "Benjamin", "Harper", "Elijah", "Priya", "Arjun", "Chen", "Yuki",
    "Fatima", "Omar", "Grace", "Daniel", "Camila", "Diego", "Hannah", "Samuel", "Aisha", "Leo",
];

/// Last names for customers and advisors.
pub const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Garcia",
    "Martinez",
    "Brown",
    "Davis",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Nguyen",
    "Patel",
    "Kim",
    "Hernandez",
    "Moore",
    "Clark",
    "Lewis",
    "Walker",
    "Young",
    "Allen",
    "Wright",
    "Scott",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Shah",
    "Tanaka",
];

/// Companies, for business customers with fleets.
pub const COMPANIES: &[&str] = &[
    "Acme Plumbing LLC",
    "Bayside Florists",
    "Northwind Logistics",
    "Sunrise Landscaping",
    "Metro Courier Co.",
];

/// Dealer name prefixes (a place); the suffix is the make sold.
pub const DEALER_PLACES: &[&str] = &[
    "Riverside",
    "Bayview",
    "Lakeshore",
    "Summit",
    "Canyon",
    "Harbor",
    "Prairie",
    "Oakwood",
];

/// A make: its world manufacturer identifier, brand name and models.
pub struct Make {
    /// The VIN's first three characters.
    pub wmi: &'static str,
    /// The brand, as `vehicleInformation.brand`.
    pub brand: &'static str,
    /// `(model, trims, engines)`.
    pub models: &'static [(
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    )],
}

/// The makes vehicles are drawn from.
pub const MAKES: &[Make] = &[
    Make {
        wmi: "1FT",
        brand: "Ford",
        models: &[
            (
                "F-150",
                &["XL", "XLT", "Lariat"],
                &["2.7L V6", "3.5L V6", "5.0L V8"],
            ),
            ("Escape", &["S", "SE", "Titanium"], &["1.5L I3", "2.0L I4"]),
        ],
    },
    Make {
        wmi: "1HG",
        brand: "Honda",
        models: &[
            (
                "Civic",
                &["LX", "Sport", "EX"],
                &["2.0L I4", "1.5L I4 Turbo"],
            ),
            ("CR-V", &["LX", "EX", "Touring"], &["1.5L I4 Turbo"]),
        ],
    },
    Make {
        wmi: "4T1",
        brand: "Toyota",
        models: &[
            ("Camry", &["LE", "SE", "XLE"], &["2.5L I4", "3.5L V6"]),
            (
                "RAV4",
                &["LE", "XLE", "Limited"],
                &["2.5L I4", "2.5L I4 Hybrid"],
            ),
        ],
    },
    Make {
        wmi: "1G1",
        brand: "Chevrolet",
        models: &[
            ("Malibu", &["LS", "RS", "LT"], &["1.5L I4 Turbo"]),
            ("Equinox", &["LS", "LT", "Premier"], &["1.5L I4 Turbo"]),
        ],
    },
    Make {
        wmi: "KMH",
        brand: "Hyundai",
        models: &[
            ("Elantra", &["SE", "SEL", "Limited"], &["2.0L I4"]),
            ("Tucson", &["SE", "SEL", "Limited"], &["2.5L I4"]),
        ],
    },
    Make {
        wmi: "5YJ",
        brand: "Tesla",
        models: &[("Model 3", &["Standard", "Long Range"], &["Electric"])],
    },
];

/// A labour operation a department offers: `(opcode, description, price, recall)`.
pub const OPCODES: &[(&str, &str, f64, bool)] = &[
    ("OIL", "Oil change", 49.95, false),
    ("ROT", "Tire rotation", 29.95, false),
    ("MPI", "Multipoint inspection", 0.0, false),
    ("BRK", "Brake inspection", 39.95, false),
    ("ALIGN", "Four-wheel alignment", 119.99, false),
    ("BATT", "Battery test and replacement", 189.00, false),
    ("CABIN", "Cabin air filter", 59.95, false),
    ("COOL", "Coolant flush", 149.95, false),
    ("TRANS", "Transmission fluid service", 229.00, false),
    ("WIPER", "Wiper blade replacement", 34.50, false),
    ("RCL24V", "Recall campaign 24V-118", 0.0, true),
];

/// Transport options: `(transportation, altTransportation)`.
pub const TRANSPORT_OPTIONS: &[(&str, &str)] = &[
    ("Waiter", "Wait at the dealership"),
    ("Drop Off", "Drop off and pick up later"),
    ("Loaner", "Courtesy loaner"),
    ("Shuttle", "Local shuttle"),
    ("Rideshare", "Rideshare credit"),
];

/// Service-team names.
pub const TEAMS: &[&str] = &["Express", "Team Blue", "Team Gold", "Fleet"];

/// What customers write in the appointment's comments.
pub const COMMENTS: &[&str] = &[
    "Oil light came on yesterday",
    "Squeaking noise when braking",
    "Please check tire pressure, TPMS warning",
    "Car pulls to the right on the highway",
    "Check engine light on and off",
    "Due for the 30k service",
    "AC not blowing cold",
    "Rattle from the rear on bumpy roads",
];

/// What advisors write in the internal notes.
pub const INTERNAL_NOTES: &[&str] = &[
    "Customer prefers text updates",
    "Repeat customer, offer loyalty discount",
    "Has an extended warranty",
    "Parts on order, confirm before arrival",
];

/// Picks one item; the lists above are never empty.
pub fn pick<'a, T>(rng: &mut impl Rng, items: &'a [T]) -> &'a T {
    items.choose(rng).unwrap_or(&items[0])
}
