//! `emoarc::trajectory::Template` on strings exactly as each family's published chat template renders them
//! (system prompt, two user turns, a reply, and the generation the trainer appends after the open assistant
//! header), the families' quirks (reasoning blocks, Llama 2's `<<SYS>>`, Mistral's spacing variants), and the
//! errors: an unrecognised string is never read as "all user".

use emoarc::trajectory::{Template, TemplateError};

fn turns(template: Template, text: &str) -> Vec<(String, String)> {
    template.parse(text).unwrap_or_else(|e| panic!("{template}: {e}")).into_iter().map(|t| (t.role, t.text)).collect()
}

fn expected(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(r, t)| (r.to_string(), t.to_string())).collect()
}

/// The conversation every family renders below, with the completion appended to the prompt.
const SYSTEM: &str = "You are kind.";
const CONVERSATION: [(&str, &str); 4] = [
    ("user", "i failed my driving test again"),
    ("assistant", "That is a gutting thing to go through twice."),
    ("user", "roundabouts. but i know what to practise now"),
    ("assistant", "That sounds like a solid plan."),
];

fn with_system() -> Vec<(String, String)> {
    let mut all = expected(&[("system", SYSTEM)]);
    all.extend(expected(&CONVERSATION));
    all
}

/// Detects the template, parses with it, and checks the turns.
fn check(text: &str, template: Template, want: Vec<(String, String)>) {
    assert_eq!(Template::detect(text), Some(template), "{text:?}");
    assert_eq!(turns(template, text), want, "{template}");
    let read: Vec<_> = Template::read(text, None).unwrap().into_iter().map(|t| (t.role, t.text)).collect();
    assert_eq!(read, want);
}

#[test]
fn chatml_and_qwen() {
    // Prompt with add_generation_prompt, then the completion and its end marker.
    let text = "<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\ni failed my driving test again<|im_end|>\n\
                <|im_start|>assistant\nThat is a gutting thing to go through twice.<|im_end|>\n<|im_start|>user\n\
                roundabouts. but i know what to practise now<|im_end|>\n<|im_start|>assistant\n\
                That sounds like a solid plan.<|im_end|>";
    check(text, Template::ChatMl, with_system());
    assert_eq!(turns(Template::Qwen, text), with_system());
    // Qwen 3 with thinking: the reasoning block is not part of the reply; a generation cut off at the length
    // limit has no end marker and runs to the end.
    let qwen3 = "<|im_start|>user\ni failed my driving test again<|im_end|>\n<|im_start|>assistant\n<think>\n\
                 The user is upset about failing.\n</think>\n\nThat is a gutting thing to go through twice.";
    assert_eq!(turns(Template::Qwen, qwen3), expected(&CONVERSATION[..2]));
    let cut_in_thought = "<|im_start|>user\ni failed my driving test again<|im_end|>\n<|im_start|>assistant\n<think>\nHmm, the";
    assert_eq!(turns(Template::Qwen, cut_in_thought), expected(&CONVERSATION[..1]));
}

#[test]
fn llama3() {
    let text = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are kind.<|eot_id|>\
                <|start_header_id|>user<|end_header_id|>\n\ni failed my driving test again<|eot_id|>\
                <|start_header_id|>assistant<|end_header_id|>\n\nThat is a gutting thing to go through twice.<|eot_id|>\
                <|start_header_id|>user<|end_header_id|>\n\nroundabouts. but i know what to practise now<|eot_id|>\
                <|start_header_id|>assistant<|end_header_id|>\n\nThat sounds like a solid plan.<|eot_id|>";
    check(text, Template::Llama3, with_system());
}

#[test]
fn llama2() {
    let text = "<s>[INST] <<SYS>>\nYou are kind.\n<</SYS>>\n\ni failed my driving test again [/INST] \
                That is a gutting thing to go through twice. </s><s>[INST] roundabouts. but i know what to practise now \
                [/INST] That sounds like a solid plan.</s>";
    check(text, Template::Llama2, with_system());
}

#[test]
fn mistral_in_its_spacing_variants() {
    // v1 (spaces around the markers), v3 (none), v7 (a system prompt block); the last reply is a generation
    // without its end marker.
    let v1 = "<s>[INST] i failed my driving test again [/INST] That is a gutting thing to go through twice.</s>\
              [INST] roundabouts. but i know what to practise now [/INST] That sounds like a solid plan.";
    check(v1, Template::Mistral, expected(&CONVERSATION));
    let v3 = "<s>[INST]i failed my driving test again[/INST]That is a gutting thing to go through twice.</s>\
              [INST]roundabouts. but i know what to practise now[/INST]That sounds like a solid plan.</s>";
    check(v3, Template::Mistral, expected(&CONVERSATION));
    let v7 = "<s>[SYSTEM_PROMPT]You are kind.[/SYSTEM_PROMPT][INST]i failed my driving test again[/INST]\
              That is a gutting thing to go through twice.</s>[INST]roundabouts. but i know what to practise now\
              [/INST]That sounds like a solid plan.</s>";
    check(v7, Template::Mistral, with_system());
}

#[test]
fn gemma() {
    // Gemma has no system role: the system prompt is folded into the first user turn.
    let text = "<bos><start_of_turn>user\ni failed my driving test again<end_of_turn>\n<start_of_turn>model\n\
                That is a gutting thing to go through twice.<end_of_turn>\n<start_of_turn>user\n\
                roundabouts. but i know what to practise now<end_of_turn>\n<start_of_turn>model\n\
                That sounds like a solid plan.<end_of_turn>\n<eos>";
    check(text, Template::Gemma, expected(&CONVERSATION));
}

#[test]
fn deepseek() {
    let text = "<｜begin▁of▁sentence｜>You are kind.<｜User｜>i failed my driving test again<｜Assistant｜>\
                That is a gutting thing to go through twice.<｜end▁of▁sentence｜><｜User｜>roundabouts. but i know what \
                to practise now<｜Assistant｜><think>\nThey have a plan; encourage it.\n</think>\n\n\
                That sounds like a solid plan.<｜end▁of▁sentence｜>";
    check(text, Template::DeepSeek, with_system());
}

#[test]
fn phi3() {
    let text = "<|system|>\nYou are kind.<|end|>\n<|user|>\ni failed my driving test again<|end|>\n<|assistant|>\n\
                That is a gutting thing to go through twice.<|end|>\n<|user|>\nroundabouts. but i know what to practise \
                now<|end|>\n<|assistant|>\nThat sounds like a solid plan.<|end|><|endoftext|>";
    check(text, Template::Phi3, with_system());
}

#[test]
fn role_lines() {
    let text = "System: You are kind.\nHuman: i failed my driving test again\n\nAssistant: That is a gutting thing to go \
                through twice.\nUser: roundabouts. but i know what to practise now\nASSISTANT: That sounds like a solid plan.";
    check(text, Template::RoleLines, with_system());
    // A line without a label continues the turn before it.
    assert_eq!(
        turns(Template::RoleLines, "user: first line\nsecond line\nassistant: ok"),
        expected(&[("user", "first line\nsecond line"), ("assistant", "ok")])
    );
    assert_eq!(Template::RoleLines.parse("hello\nuser: hi"), Err(TemplateError::Unlabelled));
}

#[test]
fn a_reply_describing_feelings_stays_the_assistants() {
    // The finding: without turn markers recognised, the reply was scored as the user's words.
    let text = "<s>[INST] i failed my driving test again [/INST] That is hard. I feel wonderful, happy, grateful and calm now!";
    assert_eq!(
        turns(Template::Mistral, text),
        expected(&[
            ("user", "i failed my driving test again"),
            ("assistant", "That is hard. I feel wonderful, happy, grateful and calm now!")
        ])
    );
}

#[test]
fn names_and_errors() {
    for (template, name) in Template::ALL.iter().zip(Template::NAMES) {
        assert_eq!(name.parse::<Template>(), Ok(*template));
        assert_eq!(template.to_string(), name);
    }
    assert_eq!("Role_Lines".parse::<Template>(), Ok(Template::RoleLines));
    let unknown = "vicuna".parse::<Template>().unwrap_err();
    assert!(unknown.to_string().contains("\"vicuna\"") && unknown.to_string().contains("chatml"), "{unknown}");
    assert_eq!(Template::detect("i failed my test. That is hard."), None);
    assert_eq!(Template::read("i failed my test. That is hard.", None), Err(TemplateError::Unrecognised));
    // Markers without text: the prompt's open assistant header alone is no turn.
    assert_eq!(
        Template::ChatMl.parse("<|im_start|>assistant\n<|im_end|>"),
        Err(TemplateError::NoTurns { template: "chatml" })
    );
    // An explicit template reads what detection would not.
    assert_eq!(Template::read("i failed", Some(Template::RoleLines)), Err(TemplateError::Unlabelled));
}
