// Sets a SCRAM user's password on a running broker through the Admin API
// (Admin#alterUserScramCredentials), as an administrator rotating a secret would; the broker's
// Maven jars have no kafka-configs.sh. A single-file program:
//   java -cp 'kafka jars/*' ScramPassword.java BOOTSTRAP USER MECHANISM PASSWORD
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;

public class ScramPassword {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        ScramMechanism mechanism = ScramMechanism.fromMechanismName(args[2]);
        try (Admin admin = Admin.create(props)) {
            admin.alterUserScramCredentials(
                    List.of(new UserScramCredentialUpsertion(args[1], new ScramCredentialInfo(mechanism, 4096), args[3])))
                .all()
                .get(30, TimeUnit.SECONDS);
        }
    }
}
