//! The Python client package (clients/python, `whospoke_client`): its pytest tests
//! (clients/python/tests) run against the real server, the package imported from its source.

use crate::pytest::run_pytest;
use crate::server::project_dir;

#[test]
fn the_python_client_works_against_the_server() {
    let source = project_dir().join("clients/python/src");
    run_pytest(
        "clients/python/tests",
        "pytest, requests and websockets",
        &[("PYTHONPATH", &source)],
    );
}
