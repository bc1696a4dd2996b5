//! Parsing speed: a generated Dockerfile of 10,000 instructions of every common kind (with
//! continuations, variables, heredocs, mounts and several stages) must parse in under 20 ms.

use criterion::{criterion_group, criterion_main, Criterion};
use mb_core::graph::Platform;
use mb_parse::{build_graph, NoBaseImages, Options};

/// A Dockerfile with `n_instructions` instructions (FROM lines included), cycling through the
/// kinds real Dockerfiles use most.
fn generated_dockerfile(n_instructions: usize) -> String {
    let mut text = String::from("# syntax=docker/dockerfile:1\nARG BASE=alpine:3.19\n");
    let mut written = 1;
    let mut stage = 0;
    while written < n_instructions {
        if written % 1_000 == 1 {
            text.push_str(&format!(
                "FROM ${{BASE}} AS stage{stage}\nARG VERSION=1.{stage}\nWORKDIR /src/$VERSION\n"
            ));
            stage += 1;
            written += 3;
            continue;
        }
        let line = match written % 10 {
            0 => format!("ENV PATH=/opt/{written}/bin:$PATH \\\n    HOME_{written}=\"/home/user {written}\"\n"),
            1 => format!("RUN apt-get install -y package-{written} \\\n && echo \"${{VERSION:-none}} done\"\n"),
            2 => format!("COPY --chown=1000:1000 --chmod=0644 src/{written}/ ./dest/{written}/\n"),
            3 => format!("LABEL org.example.item{written}=\"value $VERSION\" other=x\n"),
            4 => format!("RUN --mount=type=cache,target=/root/.cache/{written} --mount=type=bind,source=go.sum,target=go.sum go build ./cmd/{written}\n"),
            // Real Dockerfiles declare a few ARGs, not hundreds: one in fifty lines.
            5 if written % 50 == 5 => format!("ARG OPTION_{written}=${{VERSION%.*}}\n"),
            5 => format!("ENV STEP={written}\n"),
            6 => format!("RUN [\"/bin/tool\", \"--step\", \"{written}\"]\n"),
            7 => format!("COPY <<EOF /etc/conf-{written}.txt\nvalue=$VERSION\nEOF\n"),
            8 => "EXPOSE 8080/tcp 9090/udp\n".to_string(),
            _ if written % 100 == 9 => format!("WORKDIR /app/{written}\n"),
            _ => format!("WORKDIR sub{written}\n"),
        };
        text.push_str(&line);
        written += 1;
    }
    text
}

fn parse_ten_thousand_instructions(c: &mut Criterion) {
    let text = generated_dockerfile(10_000);
    let mut options = Options::new("Dockerfile", Platform::host());
    options.all_stages = true;
    c.bench_function("parse 10,000 instructions", |bencher| {
        bencher.iter(|| {
            let graph = build_graph(&text, &options, &mut NoBaseImages);
            assert!(graph.is_ok_and(|graph| graph.stages.len() == 10));
        })
    });
}

criterion_group!(benches, parse_ten_thousand_instructions);
criterion_main!(benches);
