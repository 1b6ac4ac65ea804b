//! The LwM2M server binary.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("lwm2m-server: not yet: the server lands with issue 5; the CoAP layer and data model are in lwm2m-core");
    std::process::exit(2);
}
