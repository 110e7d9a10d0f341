fn main() {
    glommio::LocalExecutorBuilder::default();
}
