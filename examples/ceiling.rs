//! The framework ceiling for `bench/run.sh`: a bare actix-web server whose one route answers
//! `GET /api/v1/projects/{project}/baselines/{benchmark}/latest` with fixed bytes from memory
//! (the body and ETag a real GET latest returned), with no authentication, storage or
//! middleware. GET latest of the real server is compared against it.
//!
//! Usage: cargo run --release --example ceiling -- PORT BODY_FILE ETAG

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: ceiling PORT BODY_FILE ETAG");
        std::process::exit(2);
    }
    let port: u16 = args[1].parse().expect("PORT is a number");
    let body = Bytes::from(std::fs::read(&args[2])?);
    let etag = args[3].clone();
    HttpServer::new(move || {
        let (body, etag) = (body.clone(), etag.clone());
        App::new().route(
            "/api/v1/projects/{project}/baselines/{benchmark:.+}/latest",
            web::get().to(move || {
                let (body, etag) = (body.clone(), etag.clone());
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .insert_header((header::ETAG, etag))
                        .body(body)
                }
            }),
        )
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
