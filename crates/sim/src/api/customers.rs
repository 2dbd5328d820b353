//! The slice of myKaarma's Customer API (`/customer/v2`) the manual test path needs: create a
//! customer (with vehicles), read one, and add a vehicle by VIN. VINs are validated, check
//! digit included.

use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::PathParams;
use super::response::{ApiError, Wrapped, parse_body};
use crate::book::BookError;
use crate::simulation::Simulation;
use crate::world::{Customer, NewCustomer, NewVehicle, Vehicle};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmailRequest {
    email_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhoneRequest {
    phone_number: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomerFields {
    first_name: Option<String>,
    last_name: Option<String>,
    company: Option<String>,
    #[serde(default)]
    emails: Vec<EmailRequest>,
    #[serde(default)]
    phone_numbers: Vec<PhoneRequest>,
    preferred_locale: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VehicleRequest {
    vin: Option<String>,
    #[serde(alias = "make")]
    brand: Option<String>,
    model: Option<String>,
    year: Option<Value>,
    mileage: Option<Value>,
}

impl VehicleRequest {
    fn into_new(self) -> Result<NewVehicle, ApiError> {
        let vin = self
            .vin
            .ok_or_else(|| ApiError::bad_request("INVALID_VIN", "vin is required"))?;
        Ok(NewVehicle {
            vin,
            brand: self.brand,
            model: self.model,
            year: number_in(self.year.as_ref()).and_then(|year| u16::try_from(year).ok()),
            mileage: number_in(self.mileage.as_ref()).and_then(|miles| u32::try_from(miles).ok()),
        })
    }
}

/// A number sent as a number or as a string of digits (myKaarma sends both).
fn number_in(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateCustomerRequest {
    customer: Option<CustomerFields>,
    #[serde(default)]
    vehicles: Vec<VehicleRequest>,
}

/// A customer in the Customer API's shape (`customerWithVehicles`).
pub fn customer_with_vehicles(customer: &Customer) -> Value {
    json!({
        "customer": {
            "customerUuid": customer.uuid,
            "customerKey": customer.customer_key,
            "firstName": customer.first_name,
            "middleName": null,
            "lastName": customer.last_name,
            "company": customer.company,
            "isBusiness": customer.company.is_some(),
            "preferredLocale": customer.locale,
            "preferredCommunication": "text",
            "emails": if customer.email.is_empty() { json!([]) } else { json!([{
                "emailAddress": customer.email, "label": "home", "okToEmail": true, "isPreferred": true
            }]) },
            "phoneNumbers": if customer.phone.is_empty() { json!([]) } else { json!([{
                "phoneNumber": customer.phone, "label": "cell", "okToCall": true, "okToText": true, "isPreferred": true
            }]) },
        },
        "vehicles": customer.vehicles.iter().map(vehicle_json).collect::<Vec<_>>(),
    })
}

/// A vehicle in the Customer API's shape.
pub fn vehicle_json(vehicle: &Vehicle) -> Value {
    json!({
        "vehicleUuid": vehicle.uuid,
        "vin": vehicle.vin,
        "isValid": true,
        "brand": vehicle.brand,
        "model": vehicle.model,
        "year": vehicle.year.to_string(),
        "trim": vehicle.trim,
        "engine": vehicle.engine,
        "mileage": vehicle.mileage.to_string(),
    })
}

fn dealer_of(simulation: &Simulation, department_uuid: &str) -> Result<String, ApiError> {
    simulation
        .dealer_of(department_uuid)
        .ok_or_else(|| BookError::UnknownDepartment(department_uuid.to_owned()).into())
}

/// `PUT /customer/v2/department/{departmentUuid}/customer`
pub async fn create(
    State(simulation): State<Simulation>,
    PathParams(department_uuid): PathParams<String>,
    body: Bytes,
) -> Result<Wrapped, ApiError> {
    let dealer_uuid = dealer_of(&simulation, &department_uuid)?;
    let request: CreateCustomerRequest = parse_body(&body)?;
    let fields = request
        .customer
        .ok_or_else(|| ApiError::bad_request("CUSTOMER_INFO_MISSING", "customer is required"))?;
    let vehicles = request
        .vehicles
        .into_iter()
        .map(VehicleRequest::into_new)
        .collect::<Result<Vec<_>, _>>()?;
    let customer = simulation.create_customer(
        &dealer_uuid,
        NewCustomer {
            first_name: fields.first_name.unwrap_or_default(),
            last_name: fields.last_name.unwrap_or_default(),
            company: fields.company,
            phone: fields
                .phone_numbers
                .into_iter()
                .find_map(|phone| phone.phone_number),
            email: fields
                .emails
                .into_iter()
                .find_map(|email| email.email_address),
            locale: fields.preferred_locale,
        },
        vehicles,
    )?;
    Ok(Wrapped::new(
        "customerWithVehicles",
        customer_with_vehicles(&customer),
    ))
}

/// `GET /customer/v2/department/{departmentUuid}/customer/{customerUuid}`
pub async fn get(
    State(simulation): State<Simulation>,
    PathParams((department_uuid, uuid)): PathParams<(String, String)>,
) -> Result<Wrapped, ApiError> {
    let dealer_uuid = dealer_of(&simulation, &department_uuid)?;
    let customer = simulation.customer(&dealer_uuid, &uuid).ok_or_else(|| {
        ApiError::not_found(
            "INVALID_CUSTOMER_UUID",
            format!("no customer {uuid:?} at this dealer"),
        )
    })?;
    Ok(Wrapped::new(
        "customerWithVehicles",
        customer_with_vehicles(&customer),
    ))
}

/// `POST /customer/v2/department/{departmentUuid}/customer/{customerUuid}/vehicle`
pub async fn add_vehicle(
    State(simulation): State<Simulation>,
    PathParams((department_uuid, uuid)): PathParams<(String, String)>,
    body: Bytes,
) -> Result<Wrapped, ApiError> {
    let dealer_uuid = dealer_of(&simulation, &department_uuid)?;
    let request: VehicleRequest = parse_body(&body)?;
    let vehicle = simulation.add_vehicle(&dealer_uuid, &uuid, request.into_new()?)?;
    Ok(Wrapped::new("vehicle", vehicle_json(&vehicle)))
}
