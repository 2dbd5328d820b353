//! `sim serve` over HTTP: myKaarma's manual test path (customer, vehicle by VIN, appointment
//! with mileage, opcodes, notes, transport, advisor and slot; edit; cancel; delete), the
//! events it fires, the DMS acknowledgements, and the errors in myKaarma's wrapper.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use kaarma_sim::api::Credentials;
use kaarma_sim::publisher::{PublisherConfig, RetryPolicy, Subscription};
use kaarma_sim::server::{self, RunningServer, ServeOptions};
use kaarma_sim::simulation::SimulationConfig;
use kaarma_sim::world::WorldShape;
use mykaarma::{AppointmentEvent, Envelope, SignatureScope, signature};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Recorder;

const USER: &str = "partner";
const PASSWORD: &str = "s3cret";

async fn start(recorder: &Recorder) -> RunningServer {
    server::start(ServeOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        credentials: Credentials {
            username: USER.into(),
            password: PASSWORD.into(),
        },
        simulation: SimulationConfig {
            seed: 3,
            world: WorldShape {
                dealers: 2,
                customers_per_dealer: 3,
            },
            dms_delay: Duration::from_millis(100),
            publisher: PublisherConfig {
                retry: RetryPolicy::default().scaled(0.01),
                ..PublisherConfig::default()
            },
            ..SimulationConfig::default()
        },
        // The secret is the API username, as myKaarma does today.
        subscriptions: vec![Subscription::new(
            recorder.url.clone(),
            USER,
            Some("myKaarma_token".into()),
        )],
    })
    .await
    .unwrap()
}

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .basic_auth(USER, Some(PASSWORD));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
}

fn error_code(body: &Value) -> &str {
    body["error"][0]["errorCode"].as_str().unwrap_or("")
}

/// The events the recorder received, parsed, in timestamp order, for one appointment.
fn events_for(recorder: &Recorder, uuid: &str) -> Vec<AppointmentEvent> {
    let mut events: Vec<(i64, AppointmentEvent)> = recorder
        .requests()
        .iter()
        .map(|request| {
            let header = request.headers[signature::SIGNATURE_HEADER]
                .to_str()
                .unwrap();
            signature::verify(
                USER.as_bytes(),
                Some(header),
                &request.body,
                SignatureScope::Body,
            )
            .unwrap();
            assert_eq!(request.headers["content-type"], "text/plain");
            let envelope = Envelope::parse(&request.body).unwrap();
            (envelope.timestamp.unwrap(), envelope.appointment().unwrap())
        })
        .filter(|(_, event)| event.appointment_uuid() == Some(uuid))
        .collect();
    events.sort_by_key(|(at, _)| *at);
    events.into_iter().map(|(_, event)| event).collect()
}

fn names(events: &[AppointmentEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.event.clone().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_manual_test_path_fires_every_event() {
    let recorder = Recorder::accepting().await;
    let running = start(&recorder).await;
    let api = Api {
        base: running.url(),
        client: reqwest::Client::new(),
    };
    use reqwest::Method;

    let (status, world) = api.get("/sim/v1/world").await;
    assert_eq!(status, StatusCode::OK);
    let dealer = &world["world"]["dealers"][0];
    let dealer_uuid = dealer["uuid"].as_str().unwrap();
    let department = &dealer["departments"][0];
    let department_uuid = department["uuid"].as_str().unwrap();
    let advisor = department["advisors"][1]["uuid"].as_str().unwrap();
    let loaner = department["transport_options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|option| option["transportation"] == "Loaner")
        .unwrap()["uuid"]
        .as_str()
        .unwrap();

    // Customer tab: a new customer, then a vehicle by VIN (a wrong check digit is refused).
    let customer_path = format!("/customer/v2/department/{department_uuid}/customer");
    let (status, body) = api
        .call(Method::PUT, &customer_path, Some(json!({"customer": {"firstName": "Test", "lastName": "Customer", "phoneNumbers": [{"phoneNumber": "+15555550100"}]}, "vehicles": [{"vin": "1HGCM82643A004352"}]})))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "INVALID_VIN"),
        "{body}"
    );
    let (status, body) = api
        .call(Method::PUT, &customer_path, Some(json!({"customer": {"firstName": "Test", "lastName": "Customer", "phoneNumbers": [{"phoneNumber": "+15555550100"}]}})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let customer_uuid = body["customerWithVehicles"]["customer"]["customerUuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let vehicle_path = format!("{customer_path}/{customer_uuid}/vehicle");
    let (status, body) = api
        .call(
            Method::POST,
            &vehicle_path,
            Some(json!({"vin": "1hgcm82633a004352", "mileage": "41000"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["vehicle"]["brand"], "Honda");
    let vehicle_uuid = body["vehicle"]["vehicleUuid"].as_str().unwrap().to_owned();
    let (status, body) = api
        .call(
            Method::POST,
            &vehicle_path,
            Some(json!({"vin": "1HGCM82633A004352"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "VEHICLE_ALREADY_EXISTS")
    );

    // Create Appointment: mileage, opcodes, notes, transport option, advisor and slot.
    let create_path = format!("/appointment/v2/dealer/{dealer_uuid}/appointment");
    let request = json!({
        "customerUuid": customer_uuid,
        "vehicleInformation": {"vehicleUuid": vehicle_uuid},
        "appointmentInformation": {
            "departmentUuid": department_uuid,
            "appointmentStartDateTime": "2030-03-04T09:00:00",
            "appointmentEndDateTime": "2030-03-04T09:30:00",
            "mileageText": "41,250",
            "serviceList": [{"opcode": "OIL"}, {"opcode": "ROT"}],
            "comments": "Oil light came on",
            "transportOption": {"transportOptionUuid": loaner},
            "assignedUser": {"uuid": advisor},
        }
    });
    let (status, body) = api
        .call(Method::POST, &create_path, Some(request.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["warnings"][0]["warningCode"], "END_TIME_ADJUSTED");
    let info = &body["appointmentInfo"];
    assert_eq!(info["status"], "SCHEDULED");
    assert_eq!(info["endTime"], "2030-03-04T09:29:59");
    assert_eq!(info["vehicleInformation"]["mileage"], "41250");
    assert_eq!(info["serviceList"][1]["description"], "Tire rotation");
    assert_eq!(info["transportOption"]["transportation"], "Loaner");
    assert_eq!(info["assignedAdvisorUuid"], advisor);
    assert_eq!(info["appointmentKey"], Value::Null);
    let uuid = info["uuid"].as_str().unwrap().to_owned();
    let (status, body) = api.call(Method::POST, &create_path, Some(request)).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "DUPLICATE_APPOINTMENT_FOUND")
    );
    running.simulation.settle().await;

    let events = events_for(&recorder, &uuid);
    assert_eq!(names(&events), ["SCHEDULED", "UPDATED"]);
    let key = events[1]
        .appointment_info_response
        .as_ref()
        .unwrap()
        .appointment_key
        .clone();
    assert!(
        key.as_deref().is_some_and(|key| key.starts_with("DMS-")),
        "{key:?}"
    );
    let get_path = format!("/appointment/v2/dealerDepartment/{department_uuid}/uuid/{uuid}");
    let (_, body) = api.get(&get_path).await;
    assert_eq!(
        body["appointmentInfo"]["appointmentKey"].as_str(),
        key.as_deref()
    );
    let (_, body) = api
        .get(&format!(
            "/appointment/v2/dealerDepartment/{department_uuid}/date/2030-03-04"
        ))
        .await;
    assert_eq!(body["serviceAppointments"][0]["uuid"], uuid.as_str());

    // Edit: reschedule, then comments; each acknowledged by the DMS.
    let patch_path = format!("/appointment/v2/department/{department_uuid}/appointment/{uuid}");
    let (status, body) = api
        .call(Method::PATCH, &patch_path, Some(json!({"appointmentInformation": {"appointmentStartDateTime": "2030-03-05T14:30:00"}})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["appointmentInfo"]["status"], "RESCHEDULED");
    running.simulation.settle().await;
    let (status, _) = api
        .call(
            Method::PATCH,
            &patch_path,
            Some(json!({"appointmentInformation": {"comments": "Also check the brakes"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    running.simulation.settle().await;
    // Cancel and, before the DMS answers, delete: that acknowledgement is never sent.
    let (_, body) = api
        .call(
            Method::PATCH,
            &patch_path,
            Some(json!({"appointmentInformation": {"status": "CANCELLED"}})),
        )
        .await;
    assert_eq!(body["appointmentInfo"]["isCancelled"], true);
    let (status, _) = api.call(Method::DELETE, &patch_path, None).await;
    assert_eq!(status, StatusCode::OK);
    running.simulation.settle().await;

    let events = events_for(&recorder, &uuid);
    assert_eq!(
        names(&events),
        [
            "SCHEDULED",
            "UPDATED",
            "RESCHEDULED",
            "UPDATED",
            "UPDATED",
            "UPDATED",
            "CANCELLED",
            "DELETED"
        ]
    );
    for event in &events {
        let info = event.appointment_info_response.as_ref().unwrap();
        assert_eq!(info.status, info.new_status);
        assert_eq!(event.uuid.as_deref(), Some(uuid.as_str()));
    }
    let last = events
        .last()
        .unwrap()
        .appointment_info_response
        .as_ref()
        .unwrap();
    assert_eq!(
        last.status.as_ref().unwrap().as_str(),
        "CANCELLED",
        "a delete carries the last state"
    );
    assert_eq!(last.appointment_key, key);
    assert_eq!(api.get(&get_path).await.0, StatusCode::NOT_FOUND);

    let (_, truth) = api.get("/sim/v1/truth").await;
    let entry = &truth["appointments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["uuid"] == uuid.as_str())
        .unwrap();
    assert_eq!(
        (entry["deleted"].clone(), entry["status"].clone()),
        (json!(true), json!("CANCELLED"))
    );
    let (_, log) = api.get("/sim/v1/deliveries").await;
    assert_eq!(log["deliveryLog"]["totals"]["failures"], 0);
    assert_eq!(
        log["deliveryLog"]["totals"]["attempts"],
        recorder.requests().len()
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn refusals_come_in_mykaarmas_wrapper() {
    let recorder = Recorder::accepting().await;
    let running = start(&recorder).await;
    let api = Api {
        base: running.url(),
        client: reqwest::Client::new(),
    };
    use reqwest::Method;

    let response = reqwest::get(format!("{}/sim/v1/world", running.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "UNAUTHORIZED");

    let world = running.simulation.world();
    let dealer = &world.dealers[0];
    let department = &dealer.departments[0];
    let customers: Vec<_> = world
        .customers
        .iter()
        .filter(|c| c.dealer_uuid == dealer.uuid)
        .collect();
    let create_path = format!(
        "/appointment/v2/dealer/{}/appointment?event=CREATED",
        dealer.uuid
    );
    let book = |customer: usize, start: &str| {
        json!({
            "customerUuid": customers[customer].uuid,
            "vehicleInformation": {"vin": customers[customer].vehicles[0].vin},
            "appointmentStartDateTime": start,
            "departmentUuid": department.uuid,
        })
    };
    let (status, body) = api
        .call(
            Method::POST,
            &create_path,
            Some(book(0, "2030-01-07T09:10:00")),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "NO_TIME_INTERVAL_EXISTS")
    );
    let (status, body) = api
        .call(Method::POST, &create_path, Some(book(0, "soon")))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "INVALID_DATE_TIME")
    );

    // Fill one slot to capacity (4), then the next booking is refused.
    for customer in 0..3 {
        let (status, body) = api
            .call(
                Method::POST,
                &create_path,
                Some(book(customer, "2030-01-07T10:00:00")),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let extra = api
        .call(Method::PUT, &format!("/customer/v2/department/{}/customer", department.uuid), Some(json!({"customer": {"firstName": "Late", "emails": [{"emailAddress": "late@example.com"}]}, "vehicles": [{"vin": "1M8GDM9AXKP042788"}]})))
        .await
        .1;
    let late = &extra["customerWithVehicles"];
    let request = json!({
        "customerUuid": late["customer"]["customerUuid"],
        "vehicleInformation": {"vehicleUuid": late["vehicles"][0]["vehicleUuid"]},
        "appointmentStartDateTime": "2030-01-07T10:00:00",
        "departmentUuid": department.uuid,
    });
    let (status, body) = api
        .call(Method::POST, &create_path, Some(request.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(
            Method::POST,
            &create_path,
            Some(json!({"customerUuid": customers[0].uuid})),
        )
        .await;
    assert!(status.is_client_error(), "{body}");
    // A fifth customer for the full slot.
    let fifth = api
        .call(Method::PUT, &format!("/customer/v2/department/{}/customer", department.uuid), Some(json!({"customer": {"firstName": "Fifth", "phoneNumbers": [{"phoneNumber": "+15555550199"}]}, "vehicles": [{"vin": "11111111111111111"}]})))
        .await
        .1;
    let full = json!({
        "customerUuid": fifth["customerWithVehicles"]["customer"]["customerUuid"],
        "appointmentStartDateTime": "2030-01-07T10:00:00",
        "departmentUuid": department.uuid,
    });
    let (status, body) = api.call(Method::POST, &create_path, Some(full)).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "SLOT_UNAVAILABLE"),
        "{body}"
    );

    let (status, body) = api
        .call(
            Method::PATCH,
            &format!(
                "/appointment/v2/department/{}/appointment/nope",
                department.uuid
            ),
            Some(json!({"comments": "x"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "APPOINTMENT_NOT_FOUND")
    );
    let response = api
        .client
        .post(format!("{}{create_path}", api.base))
        .basic_auth(USER, Some(PASSWORD))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        error_code(&response.json::<Value>().await.unwrap()),
        "INVALID_REQUEST"
    );
    let (status, body) = api.get("/appointment/v2/nowhere").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );

    // Faults can be changed while it runs; a wrong string is refused.
    let faults_url = format!("{}/sim/v1/faults", api.base);
    let response = api
        .client
        .put(&faults_url)
        .basic_auth(USER, Some(PASSWORD))
        .body("legacy=2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = api
        .client
        .put(&faults_url)
        .basic_auth(USER, Some(PASSWORD))
        .body("legacy=1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "legacy=1");

    running.simulation.settle().await;
    // `?event=CREATED` made the creates fire CREATED.
    let created = recorder
        .requests()
        .iter()
        .filter_map(|r| Envelope::parse(&r.body).unwrap().appointment().ok())
        .filter(|event| event.event.as_ref().map(|e| e.as_str()) == Some("CREATED"))
        .count();
    assert_eq!(created, 4);
    running.shutdown().await.unwrap();
}
