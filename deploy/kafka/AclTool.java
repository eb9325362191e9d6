// Adds, removes or lists Kafka ACLs through the Admin API (Admin#createAcls / #deleteAcls), for
// clusters where kafka-acls.sh is not at hand (the broker's Maven jars have no tools). Run by
// acls.sh as a single-file program: java -cp 'kafka jars/*' AclTool.java add|remove|list BOOTSTRAP [PROPERTIES]
// Bindings come on stdin, one a line (what `leadpulse topics acls` prints):
//   PRINCIPAL topic|group NAME OPERATION[,OPERATION...]      e.g. User:scorer group leadpulse Read,Describe
// Every binding allows, from any host, on the literal resource name. The tool returns once the
// broker it talks to applies the change (it polls DescribeAcls), so a client started next sees it.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class AclTool {
    static final long TIMEOUT_S = 30;

    public static void main(String[] args) {
        try {
            System.exit(run(args));
        } catch (UsageError error) {
            System.err.println("acls.sh: " + error.getMessage());
            System.exit(2);
        } catch (ExecutionException error) {
            Throwable cause = error.getCause() == null ? error : error.getCause();
            System.err.println("acls.sh: the broker refused: " + cause.getClass().getSimpleName() + ": " + cause.getMessage());
            System.exit(1);
        } catch (Exception error) {
            System.err.println("acls.sh: " + error.getClass().getSimpleName() + ": " + error.getMessage());
            System.exit(1);
        }
    }

    static int run(String[] args) throws Exception {
        if (args.length < 2 || !List.of("add", "remove", "list").contains(args[0])) {
            throw new UsageError("usage: AclTool add|remove|list BOOTSTRAP [CLIENT-PROPERTIES] < bindings");
        }
        Properties props = new Properties();
        if (args.length > 2 && !args[2].isEmpty()) {
            try (BufferedReader in = Files.newBufferedReader(Path.of(args[2]))) {
                props.load(in);
            }
        }
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        props.putIfAbsent(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        props.putIfAbsent(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "25000");
        try (Admin admin = Admin.create(props)) {
            if (args[0].equals("list")) {
                for (AclBinding binding : admin.describeAcls(AclBindingFilter.ANY).values().get(TIMEOUT_S, TimeUnit.SECONDS)) {
                    System.out.println(binding);
                }
                return 0;
            }
            List<AclBinding> bindings = readBindings();
            if (args[0].equals("add")) {
                admin.createAcls(bindings).all().get(TIMEOUT_S, TimeUnit.SECONDS);
            } else {
                List<AclBindingFilter> filters = new ArrayList<>();
                bindings.forEach(binding -> filters.add(binding.toFilter()));
                admin.deleteAcls(filters).all().get(TIMEOUT_S, TimeUnit.SECONDS);
            }
            awaitApplied(admin, bindings, args[0].equals("add"));
            System.err.println("acls.sh: " + (args[0].equals("add") ? "added " : "removed ") + bindings.size() + " ACLs");
            return 0;
        }
    }

    static List<AclBinding> readBindings() throws Exception {
        List<AclBinding> bindings = new ArrayList<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        int number = 0;
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            number++;
            String text = line.strip();
            if (text.isEmpty() || text.startsWith("#")) continue;
            String[] parts = text.split("\\s+");
            if (parts.length != 4 || !parts[0].contains(":")) {
                throw new UsageError("line " + number + ": '" + text + "' is not PRINCIPAL topic|group NAME OPERATION[,...]");
            }
            ResourceType type = switch (parts[1]) {
                case "topic" -> ResourceType.TOPIC;
                case "group" -> ResourceType.GROUP;
                default -> throw new UsageError("line " + number + ": resource '" + parts[1] + "' is not topic or group");
            };
            ResourcePattern pattern = new ResourcePattern(type, parts[2], PatternType.LITERAL);
            for (String name : parts[3].split(",")) {
                // Read, DescribeConfigs (kafka-acls.sh's spelling) -> READ, DESCRIBE_CONFIGS
                AclOperation operation = AclOperation.fromString(name.replaceAll("([a-z])([A-Z])", "$1_$2").toUpperCase(Locale.ROOT));
                if (operation == AclOperation.UNKNOWN || operation == AclOperation.ANY) {
                    throw new UsageError("line " + number + ": unknown operation '" + name + "'");
                }
                bindings.add(new AclBinding(pattern, new AccessControlEntry(parts[0], "*", operation, AclPermissionType.ALLOW)));
            }
        }
        if (bindings.isEmpty()) throw new UsageError("no bindings on stdin");
        return bindings;
    }

    /** ACLs are committed by the controller and applied by each broker a moment later. */
    static void awaitApplied(Admin admin, List<AclBinding> bindings, boolean present) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(TIMEOUT_S);
        while (true) {
            Collection<AclBinding> found = admin.describeAcls(AclBindingFilter.ANY).values().get(TIMEOUT_S, TimeUnit.SECONDS);
            Set<AclBinding> current = new HashSet<>(found);
            boolean done = present ? current.containsAll(bindings) : bindings.stream().noneMatch(current::contains);
            if (done) return;
            if (System.nanoTime() > deadline) throw new IllegalStateException("the broker did not apply the change within " + TIMEOUT_S + " s");
            Thread.sleep(100);
        }
    }

    static final class UsageError extends Exception {
        UsageError(String message) {
            super(message);
        }
    }
}
