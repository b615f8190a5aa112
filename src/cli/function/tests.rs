use std::path::Path;

use serde_json::json;

use super::{ConfigArgs, add_config, code_zip, is_zip, render_function, render_invocation, render_list};

#[test]
fn an_invocation_reads_as_lines() {
    let result = json!({
        "InvokeResult": 0, "Duration": 3.25, "BillDuration": 4, "MemUsage": 12_582_912,
        "FunctionRequestId": "req-1", "RetMsg": "{\"statusCode\":200}",
        "Log": "START RequestId:req-1\nhello\nEND RequestId:req-1\n",
    });
    assert_eq!(
        render_invocation(&result),
        "Succeeded in 3.25 ms (billed 4 ms), memory 12.0 MB, request req-1\n\
         Returned:\n{\n  \"statusCode\": 200\n}\n\
         Log:\nSTART RequestId:req-1\nhello\nEND RequestId:req-1\n"
    );
    let failed = json!({
        "InvokeResult": 1, "Duration": 1, "BillDuration": 1, "MemUsage": 0, "FunctionRequestId": "req-2",
        "RetMsg": "not JSON", "Log": "",
    });
    assert_eq!(
        render_invocation(&failed),
        "Failed in 1 ms (billed 1 ms), memory 0 B, request req-2\nError:\nnot JSON\n"
    );
}

#[test]
fn a_function_reads_as_a_few_lines() {
    let function = json!({
        "Namespace": "default", "FunctionName": "hello", "Status": "Active", "Runtime": "Python3.9",
        "Handler": "index.main_handler", "MemorySize": 128, "Timeout": 3, "CodeSize": 2048, "Description": "",
        "Environment": {"Variables": [{"Key": "A", "Value": "1"}]}, "ModTime": "2024-01-02 03:04:05",
        "Triggers": [{"Type": "clb", "TriggerDesc": "{\"accessPath\":\"http://127.0.0.1:8080/\"}"}],
    });
    assert_eq!(
        render_function(&function),
        "Function default/hello (Active)\n  \
         runtime      Python3.9, handler index.main_handler\n  \
         memory       128 MB, timeout 3 s\n  \
         code         2.0 KB\n  \
         environment  A=1\n  \
         trigger      clb http://127.0.0.1:8080/\n  \
         modified     2024-01-02 03:04:05\n"
    );
    let listed = json!({"Functions": [{"FunctionName": "hello", "Runtime": "Python3.9", "Status": "Active",
        "ModTime": "2024-01-02 03:04:05", "Description": "greets"}]});
    let table = render_list(&listed, "default");
    assert!(table.starts_with("NAME   RUNTIME"), "{table}");
    assert!(table.contains("hello  Python3.9    Active   2024-01-02 03:04:05  greets"), "{table}");
    assert_eq!(render_list(&json!({"Functions": []}), "ns"), "No functions in namespace ns.\n");
}

#[test]
fn one_source_file_is_packed_alone_at_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("index.py");
    std::fs::write(&source, "def main_handler(event, context):\n    return 1\n").unwrap();
    let zip = code_zip(&source, Some("index.main_handler"), Some("Python3.9")).unwrap();
    assert!(is_zip(&zip));
    assert_eq!(crate::functions::check_zip(&zip, 1 << 20).unwrap(), ["index.py"]);
    // A zip is sent as it is.
    let packed = dir.path().join("code.zip");
    std::fs::write(&packed, &zip).unwrap();
    assert_eq!(code_zip(&packed, None, None).unwrap(), zip);
}

#[test]
fn code_that_cannot_work_is_refused_with_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |name: &str, handler: Option<&str>, runtime: Option<&str>| {
        let path = dir.path().join(name);
        std::fs::write(&path, "x").unwrap();
        code_zip(&path, handler, runtime).unwrap_err().to_string()
    };
    let text = refused("notes.txt", None, None);
    assert!(text.ends_with("is neither a zip nor a source file (.py, .js): give a directory or a .zip"), "{text}");
    assert!(refused("broken.zip", None, None).contains("give a directory or a .zip"));
    let text = refused("hello.py", Some("index.main_handler"), Some("Python3.9"));
    assert!(text.ends_with("the handler index.main_handler is not in hello.py; give --handler hello.FUNCTION"));
    let text = refused("index.js", Some("index.main_handler"), Some("Python3.9"));
    assert!(text.ends_with("runtime Python3.9 does not run .js files"), "{text}");
    assert!(code_zip(Path::new("/no/such/file.py"), None, None).unwrap_err().to_string().contains("cannot read"));
}

#[test]
fn a_memory_size_or_timeout_the_api_refuses_is_refused_here() {
    let config = |memory, timeout| ConfigArgs { memory, timeout, description: None, env: Vec::new() };
    let mut params = json!({});
    add_config(&mut params, &config(Some(256), Some(900))).unwrap();
    assert_eq!(params, json!({"MemorySize": 256, "Timeout": 900}));
    let memory = add_config(&mut params, &config(Some(100), None)).unwrap_err().to_string();
    assert_eq!(memory, "--memory 100: a memory size is 64, or 128 to 3072 in steps of 128 (MB)");
    let timeout = add_config(&mut params, &config(None, Some(0))).unwrap_err().to_string();
    assert_eq!(timeout, "--timeout 0: a timeout is 1 to 900 seconds");
}
