//! The world the emulator runs: dealers and their departments, advisors, teams, transport
//! options, opcodes and slots, and the customers with their vehicles. Everything is drawn
//! from a seeded random source, so the same seed builds the same world.

pub mod catalog;
pub mod slots;
pub mod vin;

use std::collections::HashMap;

use rand::Rng;
use serde::Serialize;

use crate::ids::IdSource;
use catalog::pick;
pub use slots::{Slot, SlotPlan};
pub use vin::{Vin, VinError};

/// How big a world to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldShape {
    /// Number of dealers (at least one is always built).
    pub dealers: usize,
    /// Customers created up front per dealer (more can be added through the API).
    pub customers_per_dealer: usize,
}

impl Default for WorldShape {
    /// Three dealers with twenty customers each.
    fn default() -> Self {
        Self {
            dealers: 3,
            customers_per_dealer: 20,
        }
    }
}

/// Dealers, departments, customers and vehicles.
#[derive(Debug, Clone, Serialize)]
pub struct World {
    /// Every dealer, each with its departments.
    pub dealers: Vec<Dealer>,
    /// Every customer, each belonging to one dealer.
    pub customers: Vec<Customer>,
    /// Position of each customer in `customers`, so a load of many thousand customers is
    /// not searched linearly; a stale entry (someone edited `customers`) falls back to a scan.
    #[serde(skip)]
    customer_index: HashMap<String, usize>,
}

/// A dealership: a rooftop with one or more departments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dealer {
    /// 64-hex dealer id (`dealeruuid`).
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// The dealer's offset from UTC in minutes; appointment and event times are local.
    pub utc_offset_minutes: i32,
    /// Service departments.
    pub departments: Vec<Department>,
}

/// A dealer department: where appointments are booked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Department {
    /// 64-hex department id (`departmentuuid`).
    pub uuid: String,
    /// The dealer this department belongs to.
    pub dealer_uuid: String,
    /// Display name.
    pub name: String,
    /// Service advisors who can be assigned appointments.
    pub advisors: Vec<Advisor>,
    /// Teams of advisors.
    pub teams: Vec<Team>,
    /// How customers get around while their car is in.
    pub transport_options: Vec<TransportOption>,
    /// Labour operations the department offers.
    pub opcodes: Vec<Opcode>,
    /// How the day is cut into slots.
    pub slots: SlotPlan,
    /// The user id the DMS integration writes back under (`updatedByUserUuid` of its acks).
    pub dms_user_uuid: String,
}

/// A service advisor (a dealer associate).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advisor {
    /// 43-character entity id.
    pub uuid: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
}

/// A team advisors work in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Team {
    /// 43-character entity id.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// The advisors in the team.
    pub advisor_uuids: Vec<String>,
}

/// A transport option (`transportOption` in the payload).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransportOption {
    /// 43-character entity id (`transportOptionUuid`).
    pub uuid: String,
    /// Option name, e.g. `Loaner`.
    pub transportation: String,
    /// The dealer's custom name for it.
    pub alt_transportation: String,
}

/// A labour operation, as it appears in `serviceList`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Opcode {
    /// The opcode, e.g. `OIL`.
    pub opcode: String,
    /// What it is.
    pub description: String,
    /// Menu price in dollars.
    pub price: f64,
    /// True for recall work (sets the appointment's `recall`).
    pub recall: bool,
}

/// A customer of one dealer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Customer {
    /// 43-character entity id.
    pub uuid: String,
    /// The dealer the customer belongs to.
    pub dealer_uuid: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Company, for business customers.
    pub company: Option<String>,
    /// The customer's key in the DMS, once it has one.
    pub customer_key: Option<String>,
    /// Phone for confirmation texts (E.164).
    pub phone: String,
    /// Address for confirmation emails.
    pub email: String,
    /// Preferred language, e.g. `en-us`.
    pub locale: String,
    /// The customer's vehicles.
    pub vehicles: Vec<Vehicle>,
}

/// A vehicle attached to a customer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vehicle {
    /// 43-character entity id.
    pub uuid: String,
    /// A valid VIN.
    pub vin: Vin,
    /// Make, as `brand`.
    pub brand: String,
    /// Model.
    pub model: String,
    /// Model year.
    pub year: u16,
    /// Trim.
    pub trim: String,
    /// Engine description.
    pub engine: String,
    /// Last known odometer reading, in miles.
    pub mileage: u32,
}

/// A customer as the API's create request describes one.
#[derive(Debug, Clone, Default)]
pub struct NewCustomer {
    /// First name (required).
    pub first_name: String,
    /// Last name (required).
    pub last_name: String,
    /// Company, for business customers.
    pub company: Option<String>,
    /// Confirmation phone.
    pub phone: Option<String>,
    /// Confirmation email.
    pub email: Option<String>,
    /// Preferred language; `en-us` when absent.
    pub locale: Option<String>,
}

/// A vehicle as the API's add-vehicle request describes one; what is missing is read from the
/// VIN (year, make) or left generic.
#[derive(Debug, Clone, Default)]
pub struct NewVehicle {
    /// The VIN, validated with its check digit.
    pub vin: String,
    /// Make.
    pub brand: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Model year.
    pub year: Option<u16>,
    /// Odometer reading.
    pub mileage: Option<u32>,
}

/// Why the world refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorldError {
    /// No customer has this id.
    #[error("no customer has uuid {0:?}")]
    UnknownCustomer(String),
    /// The VIN is not valid.
    #[error("invalid VIN: {0}")]
    InvalidVin(#[from] VinError),
    /// The customer already has this vehicle.
    #[error("the customer already has a vehicle with VIN {0}")]
    VehicleExists(String),
    /// A required customer field is missing.
    #[error("customer {0} is required")]
    CustomerInfoMissing(&'static str),
}

impl World {
    /// Builds a world of `shape` from `rng`.
    pub fn generate(rng: &mut impl Rng, shape: &WorldShape) -> Self {
        let mut world = Self {
            dealers: Vec::new(),
            customers: Vec::new(),
            customer_index: HashMap::new(),
        };
        for index in 0..shape.dealers.max(1) {
            let dealer = generate_dealer(rng, index);
            for _ in 0..shape.customers_per_dealer {
                let customer = generate_customer(rng, &dealer.uuid);
                world.push_customer(customer);
            }
            world.dealers.push(dealer);
        }
        world
    }

    /// Every department of every dealer.
    pub fn departments(&self) -> impl Iterator<Item = &Department> {
        self.dealers.iter().flat_map(|dealer| &dealer.departments)
    }

    /// The dealer with this id.
    pub fn dealer(&self, uuid: &str) -> Option<&Dealer> {
        self.dealers.iter().find(|dealer| dealer.uuid == uuid)
    }

    /// The department with this id.
    pub fn department(&self, uuid: &str) -> Option<&Department> {
        self.departments()
            .find(|department| department.uuid == uuid)
    }

    /// The customer with this id.
    pub fn customer(&self, uuid: &str) -> Option<&Customer> {
        self.customer_position(uuid)
            .map(|index| &self.customers[index])
    }

    fn customer_position(&self, uuid: &str) -> Option<usize> {
        match self.customer_index.get(uuid) {
            Some(&index) if self.customers.get(index).is_some_and(|c| c.uuid == uuid) => {
                Some(index)
            }
            _ => self
                .customers
                .iter()
                .position(|customer| customer.uuid == uuid),
        }
    }

    fn push_customer(&mut self, customer: Customer) -> &Customer {
        self.customer_index
            .insert(customer.uuid.clone(), self.customers.len());
        self.customers.push(customer);
        self.customers.last().expect("just pushed")
    }

    /// Adds a customer of `dealer_uuid` and returns it.
    pub fn add_customer(
        &mut self,
        rng: &mut impl Rng,
        dealer_uuid: &str,
        new: NewCustomer,
    ) -> Result<&Customer, WorldError> {
        if new.first_name.trim().is_empty() && new.company.is_none() {
            return Err(WorldError::CustomerInfoMissing("firstName"));
        }
        if new.phone.is_none() && new.email.is_none() {
            return Err(WorldError::CustomerInfoMissing(
                "a phone number or an email",
            ));
        }
        let customer = Customer {
            uuid: rng.entity_id(),
            dealer_uuid: dealer_uuid.to_owned(),
            first_name: new.first_name,
            last_name: new.last_name,
            company: new.company,
            customer_key: None,
            phone: new.phone.unwrap_or_default(),
            email: new.email.unwrap_or_default(),
            locale: new.locale.unwrap_or_else(|| "en-us".to_owned()),
            vehicles: Vec::new(),
        };
        Ok(self.push_customer(customer))
    }

    /// Adds a vehicle to a customer, reading year and make from the VIN when not given.
    pub fn add_vehicle(
        &mut self,
        rng: &mut impl Rng,
        customer_uuid: &str,
        new: NewVehicle,
    ) -> Result<&Vehicle, WorldError> {
        let vin = Vin::parse(&new.vin)?;
        let index = self
            .customer_position(customer_uuid)
            .ok_or_else(|| WorldError::UnknownCustomer(customer_uuid.to_owned()))?;
        let customer = &mut self.customers[index];
        if customer.vehicles.iter().any(|vehicle| vehicle.vin == vin) {
            return Err(WorldError::VehicleExists(vin.to_string()));
        }
        let make = catalog::MAKES.iter().find(|make| make.wmi == vin.wmi());
        let vehicle = Vehicle {
            uuid: rng.entity_id(),
            brand: new
                .brand
                .or_else(|| make.map(|make| make.brand.to_owned()))
                .unwrap_or_else(|| "Unknown".to_owned()),
            model: new
                .model
                .or_else(|| make.map(|make| make.models[0].0.to_owned()))
                .unwrap_or_else(|| "Unknown".to_owned()),
            year: new.year.or(vin.model_year()).unwrap_or(2020),
            trim: make.map_or("Base", |make| make.models[0].1[0]).to_owned(),
            engine: make
                .map_or("Unknown", |make| make.models[0].2[0])
                .to_owned(),
            mileage: new.mileage.unwrap_or(0),
            vin,
        };
        customer.vehicles.push(vehicle);
        Ok(customer.vehicles.last().expect("just pushed"))
    }

    /// Adds a made-up customer with one made-up vehicle to `dealer_uuid`, as a person at the
    /// dealership would through the Customer tab, and returns it.
    pub fn add_random_customer(&mut self, rng: &mut impl Rng, dealer_uuid: &str) -> &Customer {
        let customer = generate_customer(rng, dealer_uuid);
        self.push_customer(customer)
    }
}

fn generate_dealer(rng: &mut impl Rng, index: usize) -> Dealer {
    let make = &catalog::MAKES[index % catalog::MAKES.len()];
    let uuid = rng.hex_id();
    let place = catalog::DEALER_PLACES[index % catalog::DEALER_PLACES.len()];
    let offsets = [-300, -360, -420, -480];
    let department_names: &[&str] = if rng.random_bool(0.5) {
        &["Service", "Express Service"]
    } else {
        &["Service"]
    };
    let departments = department_names
        .iter()
        .map(|name| generate_department(rng, &uuid, name))
        .collect();
    Dealer {
        name: format!("{place} {}", make.brand),
        utc_offset_minutes: offsets[index % offsets.len()],
        uuid,
        departments,
    }
}

fn generate_department(rng: &mut impl Rng, dealer_uuid: &str, name: &str) -> Department {
    let advisors: Vec<Advisor> = (0..rng.random_range(3..=5))
        .map(|_| Advisor {
            uuid: rng.entity_id(),
            first_name: pick(rng, catalog::FIRST_NAMES).to_string(),
            last_name: pick(rng, catalog::LAST_NAMES).to_string(),
        })
        .collect();
    let teams = catalog::TEAMS[..2]
        .iter()
        .enumerate()
        .map(|(index, team)| Team {
            uuid: rng.entity_id(),
            name: (*team).to_owned(),
            advisor_uuids: advisors
                .iter()
                .skip(index)
                .step_by(2)
                .map(|advisor| advisor.uuid.clone())
                .collect(),
        })
        .collect();
    let transport_options = catalog::TRANSPORT_OPTIONS
        .iter()
        .map(|(transportation, alt)| TransportOption {
            uuid: rng.entity_id(),
            transportation: (*transportation).to_owned(),
            alt_transportation: (*alt).to_owned(),
        })
        .collect();
    let opcodes = catalog::OPCODES
        .iter()
        .map(|(opcode, description, price, recall)| Opcode {
            opcode: (*opcode).to_owned(),
            description: (*description).to_owned(),
            price: *price,
            recall: *recall,
        })
        .collect();
    Department {
        uuid: rng.hex_id(),
        dealer_uuid: dealer_uuid.to_owned(),
        name: name.to_owned(),
        advisors,
        teams,
        transport_options,
        opcodes,
        slots: SlotPlan::default(),
        dms_user_uuid: rng.entity_id(),
    }
}

fn generate_customer(rng: &mut impl Rng, dealer_uuid: &str) -> Customer {
    let first_name = pick(rng, catalog::FIRST_NAMES).to_string();
    let last_name = pick(rng, catalog::LAST_NAMES).to_string();
    let company = rng
        .random_bool(0.08)
        .then(|| pick(rng, catalog::COMPANIES).to_string());
    let vehicles = (0..if rng.random_bool(0.2) { 2 } else { 1 })
        .map(|_| generate_vehicle(rng))
        .collect();
    Customer {
        uuid: rng.entity_id(),
        dealer_uuid: dealer_uuid.to_owned(),
        email: format!(
            "{}.{}{}@example.com",
            first_name.to_lowercase(),
            last_name.to_lowercase(),
            rng.random_range(1..100)
        ),
        phone: format!("+1555{:07}", rng.random_range(0..10_000_000)),
        locale: if rng.random_bool(0.15) {
            "es-us"
        } else {
            "en-us"
        }
        .to_owned(),
        customer_key: None,
        first_name,
        last_name,
        company,
        vehicles,
    }
}

/// Draws a vehicle with a valid VIN from the catalog.
pub fn generate_vehicle(rng: &mut impl Rng) -> Vehicle {
    let make = pick(rng, catalog::MAKES);
    let (model, trims, engines) = pick(rng, make.models);
    let year = rng.random_range(2012..=2025);
    Vehicle {
        uuid: rng.entity_id(),
        vin: Vin::generate(rng, make.wmi, year),
        brand: make.brand.to_owned(),
        model: (*model).to_owned(),
        year,
        trim: pick(rng, trims).to_string(),
        engine: pick(rng, engines).to_string(),
        mileage: rng.random_range(1..=15) * 5_000 + rng.random_range(0..5_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{is_entity_id, is_hex_id};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn a_world_has_valid_ids_and_vins() {
        let world = World::generate(&mut StdRng::seed_from_u64(1), &WorldShape::default());
        assert_eq!(world.dealers.len(), 3);
        assert_eq!(world.customers.len(), 60);
        for department in world.departments() {
            assert!(is_hex_id(&department.uuid));
            assert!(is_hex_id(&department.dealer_uuid));
            assert!(department.advisors.iter().all(|a| is_entity_id(&a.uuid)));
            assert!(
                department
                    .transport_options
                    .iter()
                    .all(|t| is_entity_id(&t.uuid))
            );
            assert!(!department.opcodes.is_empty());
        }
        for customer in &world.customers {
            assert!(is_entity_id(&customer.uuid));
            assert!(world.dealer(&customer.dealer_uuid).is_some());
            for vehicle in &customer.vehicles {
                assert!(is_entity_id(&vehicle.uuid));
                assert_eq!(Vin::parse(vehicle.vin.as_str()), Ok(vehicle.vin.clone()));
            }
        }
    }

    #[test]
    fn the_same_seed_builds_the_same_world() {
        let build = |seed| {
            let world = World::generate(&mut StdRng::seed_from_u64(seed), &WorldShape::default());
            serde_json::to_string(&world).unwrap()
        };
        assert_eq!(build(9), build(9));
        assert_ne!(build(9), build(10));
    }

    #[test]
    fn vehicles_are_added_by_vin() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut world = World::generate(&mut rng, &WorldShape::default());
        let dealer = world.dealers[0].uuid.clone();
        let customer = world
            .add_customer(
                &mut rng,
                &dealer,
                NewCustomer {
                    first_name: "Test".into(),
                    last_name: "Customer".into(),
                    phone: Some("+15555550100".into()),
                    ..NewCustomer::default()
                },
            )
            .unwrap()
            .uuid
            .clone();
        let vin = "1HGCM82633A004352";
        let vehicle = world
            .add_vehicle(
                &mut rng,
                &customer,
                NewVehicle {
                    vin: vin.into(),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(vehicle.brand, "Honda");
        assert_eq!(vehicle.year, 2003);
        assert_eq!(
            world.add_vehicle(
                &mut rng,
                &customer,
                NewVehicle {
                    vin: vin.into(),
                    ..Default::default()
                }
            ),
            Err(WorldError::VehicleExists(vin.into()))
        );
        assert!(matches!(
            world.add_vehicle(
                &mut rng,
                &customer,
                NewVehicle {
                    vin: "1HGCM82643A004352".into(),
                    ..Default::default()
                }
            ),
            Err(WorldError::InvalidVin(VinError::CheckDigit { .. }))
        ));
        assert_eq!(
            world
                .add_vehicle(
                    &mut rng,
                    "nobody",
                    NewVehicle {
                        vin: vin.into(),
                        ..Default::default()
                    }
                )
                .map(|_| ()),
            Err(WorldError::UnknownCustomer("nobody".into()))
        );
    }
}
